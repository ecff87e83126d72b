"""Agent lifecycle: running, paused, degraded; daily budgets; the supervisor.

Paused and degraded agents have their queued work held (it stays queued and runs
when the agent is resumed). Control kinds (help, status, resume... each feature
declares its own in ``Feature.control_kinds``) are never held, so the operator can
always get an agent going again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from enum import StrEnum

from config import BudgetSettings
from memory.actions import ActionRepo
from memory.clock import Clock
from memory.control import AgentStateRepo, SpendRepo
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskState


class AgentState(StrEnum):
    """Whether an agent takes work."""

    RUNNING = "running"
    PAUSED = "paused"
    DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """An agent's use of its daily budget."""

    actions: int
    action_limit: int
    spend: float
    spend_limit: float

    def exceeded(self) -> str | None:
        """Why the agent is over budget, or None."""
        if self.actions >= self.action_limit:
            return f"{self.actions} of {self.action_limit} actions used today"
        if self.spend_limit and self.spend >= self.spend_limit:
            return f"{self.spend:.2f} of {self.spend_limit:.2f} model spend used today"
        return None


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: budgets reset then."""
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


class Lifecycle:
    """Holds each agent's state (cached from SQLite) and applies changes with events."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        clock: Clock,
        budgets: Callable[[str], BudgetSettings],
        degrade_after: int = 3,
        control_kinds: frozenset[str] = frozenset(),
    ) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._budgets = budgets
        self._degrade_after = degrade_after
        self._repo = AgentStateRepo(store)
        self._actions = ActionRepo(store)
        self._spend = SpendRepo(store)
        self._tasks = TaskRepo(store)
        self._control_kinds = control_kinds
        self._states: dict[str, AgentState] = {}
        self._reasons: dict[str, str] = {}
        self._extra: dict[str, tuple[str, int]] = {}

    async def load(self) -> None:
        """Read the stored states (at start)."""
        for agent, row in (await self._repo.all()).items():
            self._states[agent] = AgentState(row.state)
            self._reasons[agent] = row.reason or ""
            if row.extended_day:
                self._extra[agent] = (row.extended_day, row.extra_actions)

    def state(self, agent: str) -> AgentState:
        return self._states.get(agent, AgentState.RUNNING)

    @property
    def holds_any(self) -> bool:
        """Whether any agent is paused, degraded or over budget (else nothing waits)."""
        return any(state is not AgentState.RUNNING for state in self._states.values())

    def holds(self, agent: str, kind: str) -> bool:
        """Whether a task of ``kind`` for ``agent`` must wait."""
        return kind not in self._control_kinds and self.state(agent) is not AgentState.RUNNING

    def held_notice(self, agent: str) -> str:
        """What to tell the operator about work ``agent`` holds, and what releases it."""
        state = self.state(agent)
        if state is AgentState.DEGRADED:
            return (
                f"The {agent} agent is degraded (it failed several times in a row), so this"
                f" waits. /failed shows why; /resume {agent} releases it."
            )
        if self._reasons.get(agent, "").startswith("budget:"):
            return (
                f"The {agent} agent reached its daily budget, so this waits. Extend today on"
                f" the budget card (/pending), or /resume {agent}, releases it."
            )
        return f"The {agent} agent is paused, so this waits. /resume {agent} releases it."

    async def set_state(
        self, tx: Transaction, agent: str, state: AgentState, reason: str, actor: str
    ) -> bool:
        """Change an agent's state inside ``tx``; False if it already was in it."""
        if self.state(agent) is state:
            return False
        await self._repo.set(tx, agent, state.value, reason, self._clock.now())
        await self._events.append(
            tx,
            f"agent.{state.value}",
            actor=actor,
            subject=f"agent:{agent}",
            payload={"reason": reason},
        )
        self._states[agent] = state
        self._reasons[agent] = reason
        return True

    async def budget_use(self, agent: str) -> BudgetUse:
        """Today's use of ``agent``'s budget, extensions included."""
        now = self._clock.now()
        day = start_of_day(now)
        budget = self._budgets(agent)
        extra_day, extra = self._extra.get(agent, ("", 0))
        limit = budget.actions_per_day + (extra if extra_day == day.date().isoformat() else 0)
        return BudgetUse(
            actions=await self._actions.started_since(agent, day),
            action_limit=limit,
            spend=await self._spend.since(agent, day),
            spend_limit=budget.spend_per_day,
        )

    async def extend_today(self, tx: Transaction, agent: str, actor: str) -> None:
        """Allow another day's worth of actions today and run the agent again."""
        now = self._clock.now()
        extra = max(1, self._budgets(agent).actions_per_day)
        await self._repo.extend(tx, agent, now.date(), extra, now)
        day = now.date().isoformat()
        before = self._extra.get(agent, ("", 0))
        self._extra[agent] = (day, extra + (before[1] if before[0] == day else 0))
        await self._events.append(
            tx,
            "agent.budget_extended",
            actor=actor,
            subject=f"agent:{agent}",
            payload={"extra": extra},
        )
        await self.set_state(tx, agent, AgentState.RUNNING, "budget extended for today", actor)

    async def failing_streak(self, agent: str) -> bool:
        """Whether the agent's newest finished tasks are all failures (the supervisor's rule)."""
        # Control commands (/status, /policy...) say nothing about whether the work works.
        outcomes = await self._tasks.recent_outcomes(
            agent, self._degrade_after, self._control_kinds
        )
        return len(outcomes) == self._degrade_after and all(
            o in (TaskState.FAILED, TaskState.DEAD) for o in outcomes
        )

    def snapshot(self, agents: Iterable[str]) -> dict[str, AgentState]:
        return {agent: self.state(agent) for agent in agents}
