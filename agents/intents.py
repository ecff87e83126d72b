"""Intents: what the operator asked for, typed and validated.

Every intent is a pydantic model deriving from :class:`Intent`, with a ``kind``
``Literal`` that names it. Each feature module (``agents/notes.py``, ``agents/ops.py``...)
declares its own intent models; the registry (``agents/registry.py``) assembles them
into one discriminated union at start. Each intent carries the ``Conversation`` to
answer and an idempotency key derived from the platform's message id, so the same
message can never create two tasks.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


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


class Scheduled(BaseModel):
    """Set on an intent that a scheduled job submitted: which run it is, and how late."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=200)
    scheduled_at: datetime
    late: bool = False
    missed_since: datetime | None = None
    coalesced: int = Field(default=0, ge=0)


class Intent(BaseModel):
    """The base of every intent: subclasses add ``kind: Literal[...]`` and their fields.

    ``scheduled`` is set when the scheduler submitted the intent (a reminder, the daily
    digest), so the agent can say when a run is late.

    Each intent model's validator is built when the intent is first made, not when its
    feature is imported (``defer_build``): start-up builds only the ones it uses.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: str
    conversation: Conversation
    idempotency_key: str = Field(min_length=1, max_length=256)
    scheduled: Scheduled | None = None


def kind_of(model: type[Intent]) -> str:
    """The ``kind`` an intent model declares (the default of its ``Literal`` field)."""
    default = model.model_fields["kind"].default
    if not isinstance(default, str) or model is Intent:
        raise TypeError(f"{model.__name__} must declare kind: Literal['...'] = '...'")
    return default


def dump_intent(intent: Intent) -> str:
    """Serialize an intent for the task table (the registry reads it back)."""
    return intent.model_dump_json()
