"""The command grammar and the intent router.

``/cmd args``: a command name (``/cmd@botname`` accepted, as Telegram sends in
groups), then its arguments. Commands that take free text (``/remember``) get the
rest of the line verbatim, apostrophes and all; commands with separate arguments
split them shell-style, so ``"two words"`` is one argument and an unbalanced quote is
an error. Routing is a pure function: text in, an ``Intent`` or a ``Rejection`` out.
Text that is not a command becomes a ``FreeTextIntent`` for the semantic router.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from agents.catalog import CommandInfo
from agents.intents import INTENTS, Conversation, Intent

_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z][A-Za-z0-9_]{0,31})(?:@\S+)?(?:\s+(?P<rest>.*))?$", re.DOTALL
)

ArgStyle = Literal["none", "text", "optional_text", "tokens"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message could not become an intent, said for the operator."""

    reason: str  # a stable code for the event log: unknown_command, bad_arguments, ...
    message: str


@dataclass(frozen=True, slots=True)
class Command:
    """One command of the grammar."""

    info: CommandInfo
    style: ArgStyle
    build: Callable[[Any], dict[str, Any]]

    @property
    def name(self) -> str:
        return self.info.name


def _limit_arg(tokens: list[str]) -> dict[str, Any]:
    if not tokens:
        return {}
    if len(tokens) > 1:
        raise ValueError("takes at most one number")
    return {"limit": tokens[0]}


def _forget_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes exactly one note id")
    return {"note_id": tokens[0].lstrip("#")}


def _help_args(tokens: list[str]) -> dict[str, Any]:
    return {"topic": tokens[0]} if tokens else {}


COMMANDS: tuple[Command, ...] = (
    Command(
        CommandInfo("help", "help [command]", "list commands, or explain one"), "tokens", _help_args
    ),
    Command(
        CommandInfo("status", "status", "tasks by state, deliveries, notes"), "none", lambda _: {}
    ),
    Command(
        CommandInfo(
            "events", "events [n]", "the newest n events (default 10, at most 50)", "/events 20"
        ),
        "tokens",
        _limit_arg,
    ),
    Command(
        CommandInfo(
            "remember", "remember <text>", "save a note", "/remember Acme pays invoices on the 1st"
        ),
        "text",
        lambda text: {"text": text},
    ),
    Command(
        CommandInfo(
            "recall", "recall <query>", "find notes about something", "/recall acme billing"
        ),
        "text",
        lambda text: {"query": text},
    ),
    Command(
        CommandInfo("forget", "forget <id>", "delete a note", "/forget 12"), "tokens", _forget_args
    ),
    Command(CommandInfo("notes", "notes [n]", "the newest notes"), "tokens", _limit_arg),
)


def _decide(decision: str) -> Callable[[list[str]], dict[str, Any]]:
    def build(tokens: list[str]) -> dict[str, Any]:
        if len(tokens) != 1:
            raise ValueError("takes the code shown on the card")
        return {"code": tokens[0].upper(), "decision": decision}

    return build


COMMANDS += (
    Command(
        CommandInfo(
            "confirm",
            "confirm <text>",
            "ask yourself for a yes/no with an approval card; the answer is logged",
            "/confirm ship the October newsletter",
        ),
        "text",
        lambda text: {"text": text},
    ),
    Command(
        CommandInfo("pending", "pending", "approvals waiting for you, with their buttons"),
        "none",
        lambda _: {},
    ),
    Command(
        CommandInfo(
            "approve", "approve <code>", "approve the card with this code", "/approve K7Q2MX"
        ),
        "tokens",
        _decide("approve"),
    ),
    Command(
        CommandInfo("reject", "reject <code>", "reject the card with this code", "/reject K7Q2MX"),
        "tokens",
        _decide("reject"),
    ),
)


def _hook_args(rest: str) -> dict[str, Any]:
    if not rest:
        return {}
    name, _, text = rest.partition(" ")
    return {"name": name.lower(), "text": text.strip()}


def _one_agent(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes one agent name (see /agents)")
    return {"agent": tokens[0].lower()}


def _undo_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) > 1:
        raise ValueError("takes at most one event number")
    return {"event": tokens[0].lstrip("#")} if tokens else {}


COMMANDS += (
    Command(
        CommandInfo(
            "hook",
            "hook <name> <text>",
            "post to one of your webhooks (n8n, Zapier, a script), with approval",
            "/hook crm new lead Jane Doe",
        ),
        "optional_text",
        _hook_args,
    ),
    Command(
        CommandInfo(
            "policy",
            "policy [agent.action change]",
            "show policies, or change one",
            "/policy ops.hook approve-above 500 EUR",
        ),
        "tokens",
        lambda tokens: {"words": tuple(tokens)},
    ),
    Command(
        CommandInfo("agents", "agents", "agents: state, last run, failures, budget"),
        "none",
        lambda _: {},
    ),
    Command(
        CommandInfo("pause", "pause <agent>", "hold an agent's work", "/pause ops"),
        "tokens",
        _one_agent,
    ),
    Command(
        CommandInfo("resume", "resume <agent>", "let an agent work again", "/resume ops"),
        "tokens",
        _one_agent,
    ),
    Command(
        CommandInfo(
            "undo", "undo [event]", "undo the last reversible action (or the one an event names)"
        ),
        "tokens",
        _undo_args,
    ),
    Command(
        CommandInfo("failed", "failed", "dead letters, with Retry / Discard"), "none", lambda _: {}
    ),
)

CATALOG: tuple[CommandInfo, ...] = tuple(command.info for command in COMMANDS)
_BY_NAME = {command.name: command for command in COMMANDS}


def route(text: str, conversation: Conversation, idempotency_key: str) -> Intent | Rejection:
    """Turn one message into an intent, or say why it cannot be one."""
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
        return INTENTS.validate_python(
            {
                "kind": "free_text",
                "conversation": conversation,
                "idempotency_key": idempotency_key,
                "text": stripped,
            }
        )
    name = match["name"].lower()
    rest = (match["rest"] or "").strip()
    command = _BY_NAME.get(name)
    if command is None:
        close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
        hint = f" Did you mean /{close[0]}?" if close else ""
        return Rejection(
            "unknown_command", f"Unknown command /{_clip(name)}.{hint} Send /help for the list."
        )
    try:
        args = _arguments(command, rest)
        fields = command.build(args)
    except ValueError as exc:
        return Rejection("bad_arguments", f"/{name} {exc}. Usage: /{command.info.usage}")
    try:
        kind = "decide" if name in ("approve", "reject") else name
        return INTENTS.validate_python(
            {
                "kind": kind,
                "conversation": conversation,
                "idempotency_key": idempotency_key,
                **fields,
            }
        )
    except ValidationError as exc:
        return Rejection(
            "bad_arguments", f"/{name}: {_first_problem(exc)}. Usage: /{command.info.usage}"
        )


def _arguments(command: Command, rest: str) -> Any:
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
