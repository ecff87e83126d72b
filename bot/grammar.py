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

import difflib
import re
import shlex
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agents.feature import CommandSpec
from agents.intents import Conversation, Intent
from agents.registry import Registry

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
        return Rejection("bad_arguments", f"/{name} {exc}. Usage: /{command.usage}")
    try:
        return registry.intent(command.kind, conversation, idempotency_key, **fields)
    except ValidationError as exc:
        return Rejection(
            "bad_arguments", f"/{name}: {_first_problem(exc)}. Usage: /{command.usage}"
        )


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
    try:
        return shlex.split(rest)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise ValueError(
            f"has an unbalanced quote ({str(exc).lower()}): close it, or put a \\ before it"
        ) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][-1]) if error["loc"] else "input"
    return f"{field.replace('_', ' ')} {error['msg'].lower()}"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
