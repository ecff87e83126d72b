"""The contract every agent fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

from agents.actions import Propose
from agents.fingerprint import fingerprint
from agents.intents import Intent
from agents.replies import Reply


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


@dataclass(frozen=True, slots=True)
class ActionReport:
    """How a proposed action ended, given back to the agent that proposed it."""

    action_id: int
    summary: str
    outcome: Literal["succeeded", "rejected", "discarded"]
    result: dict[str, Any] | None = None
    by: str | None = None
    reason: str | None = None


Outcome = Sequence[Reply] | NeedsApproval | Propose


@dataclass(frozen=True, slots=True)
class Examples:
    """How operators phrase an intent in plain words, for the free-text router.

    ``text_field`` names the intent field that receives the whole message (``query``
    for recall); None means the intent takes no text. ``label`` is what a choice
    button says when the router has to ask.
    """

    label: str
    phrasings: tuple[str, ...]
    text_field: str | None = None


class Agent(ABC):
    """A typed agent: handles some intent kinds, returns replies or asks for approval.

    ``handle`` may be called again for the same task (after a crash, or when an
    approval is decided, with ``ctx.decision`` set), so anything it stores must be
    keyed by ``ctx.idempotency_key`` to happen once.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]
    # Least privilege: the (connector, operation) pairs this agent may propose.
    capabilities: ClassVar[frozenset[tuple[str, str]]] = frozenset()
    # Example phrasings per intent kind, kept beside the agent that handles them.
    examples: ClassVar[Mapping[str, Examples]] = {}

    @abstractmethod
    async def handle(self, intent: Intent, ctx: TaskContext) -> Outcome:
        """Do the work of one intent."""

    async def on_action(self, intent: Intent, report: ActionReport) -> Outcome:
        """Say how a proposed action ended (override for a better reply or a next step)."""
        if report.outcome == "succeeded":
            said = (report.result or {}).get("summary")
            return [Reply(text=f"Done: {report.summary}" + (f" ({said})" if said else ""))]
        if report.outcome == "rejected":
            why = report.reason or (f"rejected by {report.by}" if report.by else "rejected")
            return [Reply(text=f"Not done ({why}): {report.summary}")]
        return [Reply(text=f"Discarded: {report.summary}")]
