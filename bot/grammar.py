"""The command grammar: one message in, a typed intent or a rejection out.

``/cmd args``: a command name (``/cmd@botname`` accepted, as Telegram sends in
groups), then its arguments. Commands that take free text (``/remember``) get the
rest of the line verbatim, apostrophes and all; commands with separate arguments
split them shell-style, so ``"two words"`` is one argument and an unbalanced quote is
an error. :func:`parse` is a pure function over the registry's command catalogue
(``agents/registry.py``): text in, an ``Intent`` or a ``Rejection`` out. Text that is
not a command becomes a ``free_text`` intent for the semantic router.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, get_args

import annotated_types
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agents.feature import CommandSpec
from agents.intents import Conversation, Intent, kind_of
from agents.registry import Registry

# SQLite stores integers in 64 bits: a larger id or count could never match anything,
# and binding one raises OverflowError deep in the store.
MAX_INT = 2**63 - 1

_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z][A-Za-z0-9_]{0,31})(?:@\S+)?(?:\s+(?P<rest>.*))?$", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message could not become an intent, said for the operator."""

    reason: str  # a stable code for the event log: unknown_command, bad_arguments, ...
    message: str


def parse(
    text: str, conversation: Conversation, idempotency_key: str, registry: Registry
) -> Intent | Rejection:
    """Turn one message into an intent of ``registry``, or say why it cannot be one."""
    stripped = text.strip()
    if not stripped:
        return Rejection("empty", "That message was empty. Send /help to see what I can do.")
    match = _COMMAND.match(stripped)
    if match is None:
        if stripped.startswith("/"):
            return Rejection(
                "unknown_command",
                f"{_clip(stripped.split()[0])} is not a command. Send /help to see the commands.",
            )
        # Not a command: the router (agents/router.py) decides what it means, by meaning.
        return registry.intent("free_text", conversation, idempotency_key, text=stripped)
    name = match["name"].lower()
    rest = (match["rest"] or "").strip()
    command = registry.command(name)
    if command is None:
        import difflib  # only a mistyped command needs it (~1.5 ms to import at start)

        names = [spec.name for spec in registry.catalog]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean /{close[0]}?" if close else ""
        return Rejection(
            "unknown_command", f"Unknown command /{_clip(name)}.{hint} Send /help for the list."
        )
    try:
        args = _arguments(command, rest)
        fields = command.build(args)
    except ValueError as exc:
        return Rejection("bad_arguments", f"/{name} {exc}. {_usage(command)}")
    try:
        intent = registry.intent(command.kind, conversation, idempotency_key, **fields)
    except ValidationError as exc:
        problem = _plain_problem(exc.errors()[0], _model(registry, command.kind))
        return Rejection("bad_arguments", f"/{name}: {problem}. {_usage(command)}")
    for field_name in fields:
        value = getattr(intent, field_name, None)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            words = field_name.replace("_", " ")
            return Rejection(
                "bad_arguments", f"/{name}: {words} is far too large. {_usage(command)}"
            )
    return intent


def _usage(command: CommandSpec) -> str:
    """What to type instead: the usage line, and the example when there is one."""
    example = f", e.g. {command.example}" if command.example else ""
    return f"Usage: /{command.usage}{example}"


def _model(registry: Registry, kind: str) -> type[Intent] | None:
    feature = registry.feature_for(kind)
    if feature is None:
        return None
    return next((m for m in feature.intents if kind_of(m) == kind), None)


def _bounds(model: type[Intent] | None, field_name: str) -> tuple[Any, Any]:
    """The field's lower and upper bounds (inclusive where the model says so)."""
    low = high = None
    info = None if model is None else model.model_fields.get(field_name)
    for item in [] if info is None else info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt) and isinstance(item.gt, int):
            low = item.gt + 1
        elif isinstance(item, annotated_types.Le):
            high = item.le
        elif isinstance(item, annotated_types.Lt) and isinstance(item.lt, int):
            high = item.lt - 1
    return low, high


def _is_int(model: type[Intent] | None, field_name: str) -> bool:
    info = None if model is None else model.model_fields.get(field_name)
    annotation = None if info is None else info.annotation
    return annotation is int or (
        annotation is not None and set(get_args(annotation)) == {int, type(None)}
    )


def _plain_problem(error: ErrorDetails, model: type[Intent] | None) -> str:
    """One pydantic error in plain words, never its raw message."""
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    field_name = loc[-1] if loc else ""
    words = field_name.replace("_", " ") or "the argument"
    kind = error["type"]
    low, high = _bounds(model, field_name)
    numeric = kind.startswith(("greater_than", "less_than", "int_", "float_", "decimal_"))
    if numeric:
        what = "a whole number" if _is_int(model, field_name) else "a number"
        if low is not None and high is not None:
            return f"{words} must be {what} from {low} to {high}"
        if low is not None:
            return f"{words} must be {what}, {low} or more"
        if high is not None:
            return f"{words} must be {what} up to {high}"
        return f"{words} must be {what}"
    if kind in ("string_too_short", "too_short", "missing"):
        return f"{words} is missing"
    if kind in ("string_too_long", "too_long"):
        limit = (error.get("ctx") or {}).get("max_length")
        return f"{words} is too long" + (f" (at most {limit} characters)" if limit else "")
    if kind in ("literal_error", "enum"):
        expected = (error.get("ctx") or {}).get("expected")
        return f"{words} must be one of {expected}" if expected else f"{words} is not one I know"
    if kind == "value_error":
        # Our own validators' messages, written for the operator ("Value error, " off).
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"{words}: {message}" if field_name else message
    return f"{words} is not valid here"


def _arguments(command: CommandSpec, rest: str) -> Any:
    if command.style == "none":
        if rest:
            raise ValueError("takes no arguments")
        return None
    if command.style == "text":
        if not rest:
            raise ValueError("needs some text")
        return rest
    if command.style == "optional_text":
        return rest
    if not rest:
        return []  # what shlex.split("") gives, without building a lexer
    try:
        return shlex.split(rest)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise ValueError(
            f"has an unbalanced quote ({str(exc).lower()}): close it, or put a \\ before it"
        ) from None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
