"""The contract every agent fulfils."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

from agents.intents import Intent
from agents.replies import Reply


def fingerprint(agent: str, action: dict[str, Any]) -> str:
    """The identity of an exact action: any change to it gives another fingerprint."""
    body = json.dumps(
        action, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(f"{agent}\x1f{body}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NeedsApproval:
    """What an agent returns to stop and ask the operator before going on.

    ``summary`` is what the card shows (who, what, how much); ``action`` is the exact
    thing being approved — the approval binds its fingerprint.
    """

    summary: str
    action: dict[str, Any] = field(default_factory=dict)
    ttl: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The operator's answer to an approval, given to the task when it resumes."""

    approval_id: int
    outcome: Literal["approved", "rejected", "expired", "voided"]
    by: str
    fingerprint: str

    def covers(self, agent: str, action: dict[str, Any]) -> bool:
        """Whether this decision was made on exactly this action."""
        return self.fingerprint == fingerprint(agent, action)


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What an agent knows about the task it is running."""

    task_id: int
    attempt: int
    idempotency_key: str
    decision: Decision | None = None


Outcome = Sequence[Reply] | NeedsApproval


class Agent(ABC):
    """A typed agent: handles some intent kinds, returns replies or asks for approval.

    ``handle`` may be called again for the same task (after a crash, or when an
    approval is decided, with ``ctx.decision`` set), so anything it stores must be
    keyed by ``ctx.idempotency_key`` to happen once.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]

    @abstractmethod
    async def handle(self, intent: Intent, ctx: TaskContext) -> Outcome:
        """Do the work of one intent."""
