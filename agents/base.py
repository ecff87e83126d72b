"""The contract every agent fulfils, and what it may answer.

An agent's :meth:`Agent.handle` returns an :data:`AgentResult`: replies, a
:class:`NeedsApproval` (stop and ask), a :class:`~agents.actions.Propose` (an action for
the executor) or a :class:`Reroute` (the free-text router's answer: run this typed
intent instead, in the same task).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from agents.actions import Propose
from agents.fingerprint import fingerprint
from agents.intents import Intent
from agents.replies import Reply

if TYPE_CHECKING:
    from memory.digest_facts import Section


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
class ApprovalDecision:
    """The operator's answer to an approval, given to the task when it resumes."""

    approval_id: int
    outcome: Literal["approved", "rejected", "expired", "voided"]
    by: str  # the platform id (``telegram:12345``): for the record
    fingerprint: str
    name: str | None = None  # the name the platform gave with the press: for people

    @property
    def who(self) -> str:
        """Who decided, as a reply says it: the display name, else the platform id."""
        return self.name or self.by

    def covers(self, agent: str, action: dict[str, Any]) -> bool:
        """Whether this decision was made on exactly this action."""
        return self.fingerprint == fingerprint(agent, action)


@dataclass(frozen=True, slots=True)
class Reroute:
    """Run ``intent`` instead, in the same task (same idempotency key and lane place).

    The coordinator re-targets the task and applies pause, degradation, budgets and
    capabilities as for a typed command. ``memo`` is handed back to the rerouting
    agent's :meth:`Agent.after_reroute` once the target has answered.
    """

    intent: Intent
    memo: dict[str, Any] = field(default_factory=dict)
    # The operator's own words read by the strict command grammar (a spoken command),
    # not a guess by meaning: its target may propose an action or ask, and an action
    # then always waits for approval (a transcript may have misheard a name or amount).
    exact: bool = False


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What an agent knows about the task it is running."""

    task_id: int
    attempt: int
    idempotency_key: str
    decision: ApprovalDecision | None = None


@dataclass(frozen=True, slots=True)
class ActionReport:
    """How a proposed action ended, given back to the agent that proposed it."""

    action_id: int
    summary: str
    outcome: Literal["succeeded", "rejected", "discarded"]
    result: dict[str, Any] | None = None
    by: str | None = None  # who decided, as people read it (the display name, else the id)
    reason: str | None = None


AgentResult = Sequence[Reply] | NeedsApproval | Propose | Reroute


class Agent(ABC):
    """A typed agent: handles its feature's intent kinds.

    It is built by its feature's factory from narrow ports (``agents/ports.py``) and
    never sees the coordinator. ``handle`` may be called again for the same task
    (after a crash, or when an approval is decided, with ``ctx.decision`` set), so
    anything it stores must be keyed by ``ctx.idempotency_key`` to happen once.
    """

    name: str

    @abstractmethod
    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        """Do the work of one intent."""

    async def on_action(self, intent: Intent, report: ActionReport) -> AgentResult:
        """Say how a proposed action ended (override for a better reply or a next step)."""
        if report.outcome == "succeeded":
            said = (report.result or {}).get("summary")
            return [Reply(text=f"Done: {report.summary}" + (f" ({said})" if said else ""))]
        if report.outcome == "rejected":
            why = report.reason or (f"rejected by {report.by}" if report.by else "rejected")
            return [Reply(text=f"Not done ({why}): {report.summary}")]
        return [Reply(text=f"Discarded: {report.summary}")]

    async def after_reroute(
        self, routed: Intent, replies: list[Reply], memo: dict[str, Any]
    ) -> list[Reply]:
        """Adjust the replies of an intent this agent rerouted (the router adds notes)."""
        return replies

    async def due(self, now: datetime, horizon: datetime) -> Section | None:
        """What of this feature's falls due before ``horizon`` (the digest and /today ask).

        Return a :class:`~memory.digest_facts.Section` (a title and ready-made lines, e.g.
        "Invoices unpaid (2)" / "• #12 Acme 1,200.00 EUR, due tomorrow") or None when
        nothing is due. ``now`` and ``horizon`` are aware instants; the digest asks up to
        the end of tomorrow (local), /today up to the end of today. Read only: this must
        change nothing, and it should answer quickly (one query).
        """
        return None
