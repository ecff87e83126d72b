"""Intents: what the operator asked for, typed and validated.

An intent is a discriminated union on ``kind``. Each carries the ``Conversation`` to
answer and an idempotency key derived from the platform's message id, so the same
message can never create two tasks.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Conversation(BaseModel):
    """Where a request came from and where its replies go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: str = Field(min_length=1, max_length=32)
    chat_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    thread_id: str | None = Field(default=None, max_length=128)
    message_id: str | None = Field(default=None, max_length=128)

    @property
    def lane(self) -> str:
        """Tasks in one lane run in the order they were asked."""
        return f"{self.platform}:{self.chat_id}"

    @property
    def actor(self) -> str:
        """Who asked, as written in the event log."""
        return f"{self.platform}:{self.user_id}"


class _Intent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation: Conversation
    idempotency_key: str = Field(min_length=1, max_length=256)


class HelpIntent(_Intent):
    """Show the commands, or the usage of one."""

    kind: Literal["help"] = "help"
    topic: str | None = None


class StatusIntent(_Intent):
    """Show how soloops is doing."""

    kind: Literal["status"] = "status"


class EventsIntent(_Intent):
    """Show the newest events."""

    kind: Literal["events"] = "events"
    limit: int = Field(default=10, ge=1, le=50)


class RememberIntent(_Intent):
    """Store a note."""

    kind: Literal["remember"] = "remember"
    text: str = Field(min_length=1)


class RecallIntent(_Intent):
    """Find notes."""

    kind: Literal["recall"] = "recall"
    query: str = Field(min_length=1)
    limit: int = Field(default=5, ge=1, le=20)


class ForgetIntent(_Intent):
    """Delete a note."""

    kind: Literal["forget"] = "forget"
    note_id: int = Field(ge=1)


class NotesIntent(_Intent):
    """List the newest notes."""

    kind: Literal["notes"] = "notes"
    limit: int = Field(default=10, ge=1, le=50)


class ConfirmIntent(_Intent):
    """Ask the operator to confirm something, with an approval card."""

    kind: Literal["confirm"] = "confirm"
    text: str = Field(min_length=1, max_length=2000)


class PendingIntent(_Intent):
    """List approvals still waiting, with their buttons."""

    kind: Literal["pending"] = "pending"


class DecideIntent(_Intent):
    """Approve or reject by the short code a card shows (``/approve K7Q2MX``)."""

    kind: Literal["decide"] = "decide"
    code: str = Field(min_length=4, max_length=16)
    decision: Literal["approve", "reject"]


class HookIntent(_Intent):
    """Post to a named outbound webhook (``name`` None: list the hooks)."""

    kind: Literal["hook"] = "hook"
    name: str | None = Field(default=None, max_length=64)
    text: str = Field(default="", max_length=8000)


class PolicyIntent(_Intent):
    """Show or change policies: ``/policy [<agent.action> <change...>]``."""

    kind: Literal["policy"] = "policy"
    words: tuple[str, ...] = ()


class AgentsIntent(_Intent):
    """List agents with state, last run, failures and budget use."""

    kind: Literal["agents"] = "agents"


class PauseIntent(_Intent):
    """Hold an agent's work until it is resumed."""

    kind: Literal["pause"] = "pause"
    agent: str = Field(min_length=1, max_length=64)


class ResumeIntent(_Intent):
    """Let a paused or degraded agent work again."""

    kind: Literal["resume"] = "resume"
    agent: str = Field(min_length=1, max_length=64)


class UndoIntent(_Intent):
    """Undo the last reversible action, or the one an event names."""

    kind: Literal["undo"] = "undo"
    event: int | None = Field(default=None, ge=1)


class FailedIntent(_Intent):
    """List dead letters with their Retry / Discard buttons."""

    kind: Literal["failed"] = "failed"


class FreeTextIntent(_Intent):
    """A message that is not a command: the router decides what it means."""

    kind: Literal["free_text"] = "free_text"
    text: str = Field(min_length=1)


Intent = Annotated[
    HelpIntent
    | StatusIntent
    | EventsIntent
    | RememberIntent
    | RecallIntent
    | ForgetIntent
    | NotesIntent
    | ConfirmIntent
    | PendingIntent
    | DecideIntent
    | HookIntent
    | PolicyIntent
    | AgentsIntent
    | PauseIntent
    | ResumeIntent
    | UndoIntent
    | FailedIntent
    | FreeTextIntent,
    Field(discriminator="kind"),
]

INTENTS: TypeAdapter[Intent] = TypeAdapter(Intent)


def dump_intent(intent: Intent) -> str:
    """Serialize an intent for the task table."""
    return INTENTS.dump_json(intent).decode("utf-8")


def load_intent(text: str) -> Intent:
    """Rebuild an intent stored by :func:`dump_intent`."""
    return INTENTS.validate_json(text)
