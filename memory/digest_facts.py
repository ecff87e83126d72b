"""The facts a digest is composed from: plain records, read in one snapshot.

They live in ``memory/`` because :mod:`memory.reports` builds them and ``memory`` may
not import ``agents``; :mod:`agents.digest_compose` composes them (and re-exports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class CardRef:
    """An approval card to show again with the digest (the caller renders its buttons)."""

    approval_id: int
    code: str
    purpose: str  # action | dead_letter | reconcile | budget


@dataclass(frozen=True, slots=True)
class Failure:
    """One failure in the window.

    ``cause`` is what went wrong in a few words; failures with the same runbook (or,
    without one, the same cause) are one line. ``recovered_at`` is when the same thing
    (the connector, the platform, the task kind) next worked, if it did; a line shows
    "recovered" when its newest failure has one.
    """

    at: datetime
    source: str  # task | action | reply | breaker
    cause: str
    runbook: str | None = None
    subject: str = ""
    recovered_at: datetime | None = None

    @property
    def group(self) -> str:
        """What failures are grouped by."""
        return self.runbook or self.cause


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that gave up, waiting for Retry or Discard."""

    task_id: int
    summary: str
    error: str
    at: datetime
    runbook: str | None = None
    card: CardRef | None = None  # its Retry / Discard card, while that is pending


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A card waiting for the operator (not a dead letter: those are listed apart)."""

    card: CardRef
    agent: str
    summary: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A reply that could not be delivered."""

    outbox_id: int
    platform: str
    chat_id: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Section:
    """What a feature contributes: a title and ready-made lines (e.g. due reminders)."""

    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentActivity:
    """One agent's work in the window."""

    agent: str
    succeeded: int
    failed: int
    actions: int


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """One agent's use of today's budget (budgets reset at midnight UTC)."""

    agent: str
    actions: int
    actions_limit: int
    spend: float
    spend_limit: float

    @property
    def exceeded(self) -> bool:
        return self.actions >= self.actions_limit or self.spend >= self.spend_limit > 0


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """A scheduled run that did not happen on time."""

    job: str
    scheduled_for: datetime
    outcome: str  # late | skipped
    at: datetime  # when it ran late, or when it was skipped
    note: str = ""


@dataclass(frozen=True, slots=True)
class DayCount:
    """Tasks that finished on one local day (for the chart)."""

    day: date
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class DigestFacts:
    """Everything the digest says, read at ``now``. Times are aware (UTC as stored)."""

    now: datetime
    timezone: str = "UTC"
    failures: tuple[Failure, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()
    pending_approvals: tuple[PendingApproval, ...] = ()
    failed_deliveries: tuple[FailedDelivery, ...] = ()
    due: tuple[Section, ...] = ()
    activity: tuple[AgentActivity, ...] = ()
    budgets: tuple[BudgetUse, ...] = ()
    scheduled: tuple[ScheduledRun, ...] = ()
    week: tuple[DayCount, ...] = ()
    chain_head: str | None = None
    chain_length: int = 0
