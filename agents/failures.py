"""The failure path of an action: transient retries, delays, dead letters, uncertain
landings, budget pauses and the supervisor.

Each method moves the action and its task in one transaction (through
:class:`~agents.transitions.Mover`), tells the operator where they must act (a card),
and returns :data:`PARKED`: the task is out of ``running`` and has nothing to reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.approvals import ApprovalDesk
from agents.backoff import Backoff
from agents.base import NeedsApproval
from agents.breaker import BreakerState
from agents.breakers import BreakerBoard, label
from agents.intents import Conversation
from agents.lifecycle import AgentState, Lifecycle
from agents.policy import Mode
from agents.policybook import PolicyBook
from agents.replies import error
from agents.runbook import hint
from agents.transitions import Mover
from memory.actions import ActionRow, ActionState
from memory.clock import Clock
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRow, TaskState

ACTOR = "coordinator"
CARD_LABELS = {"dead_letter": ("Retry", "Discard"), "reconcile": ("Mark done", "Retry")}


class Parked:
    """The task was moved out of ``running`` (waiting, delayed or dead); nothing to reply."""


PARKED = Parked()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failing actions are retried: attempts, the shared backoff, a call's timeout."""

    max_attempts: int = 6
    backoff: Backoff = field(default_factory=lambda: Backoff(2.0, 600.0))
    call_timeout_s: float = 30.0


class FailurePath:
    """What happens to an action (and its task) when it cannot simply succeed."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        mover: Mover,
        desk: ApprovalDesk,
        lifecycle: Lifecycle,
        policies: PolicyBook,
        clock: Clock,
        *,
        retry: RetryPolicy,
        breakers: BreakerBoard,
        hints: Mapping[tuple[str, str], str],
        on_change: Callable[[], None],
    ) -> None:
        self._store = store
        self._events = events
        self._mover = mover
        self._desk = desk
        self._lifecycle = lifecycle
        self._policies = policies
        self._clock = clock
        self._retry = retry
        self._breakers = breakers
        self._hints = hints
        self._on_change = on_change

    async def transient(
        self,
        task: TaskRow,
        conversation: Conversation,
        row: ActionRow,
        reason: str,
        retry_after: float | None,
    ) -> Parked:
        """Retry later (the shared backoff, the service's own wait, the breaker's)."""
        now = self._clock.now()
        endpoint = self._breakers.endpoint(row)
        breaker = self._breakers.get(row.connector, endpoint)
        was = breaker.state(now)
        if await self._breakers.failure(row.connector, endpoint):
            await self._events.record(
                "breaker.opened",
                actor=ACTOR,
                subject=f"connector:{label(row.connector, endpoint)}",
                payload={
                    "failures": breaker.failures,
                    "endpoint": endpoint,
                    "after": reason[:200],
                },
            )
        attempt = row.attempts + 1
        if attempt >= self._retry.max_attempts:
            why = f"{reason} (after {attempt} attempts)"
            return await self.dead_letter(task, conversation, row, why, "exhausted")
        wait = self._retry.backoff.delay(attempt, retry_after)
        if was is BreakerState.HALF_OPEN or breaker.state(now) is BreakerState.OPEN:
            wait = max(wait, (breaker.retry_at(now) - now).total_seconds())
        async with self._store.write() as tx:
            await self._mover.move(
                tx,
                row.id,
                ActionState.APPROVED,
                expect=ActionState.IN_FLIGHT,
                error=reason[:500],
                event="action.retry",
                payload={"error": reason[:300], "attempt": attempt, "wait_s": round(wait, 3)},
            )
            await self._requeue(tx, task, next_attempt_at=now + timedelta(seconds=wait))
        return PARKED

    async def delay(self, task: TaskRow, until: datetime, why: str, row: ActionRow) -> Parked:
        """Try again at ``until`` (an open breaker)."""
        async with self._store.write() as tx:
            await self._events.append(
                tx,
                "action.delayed",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={"why": why, "until": until.isoformat()},
            )
            await self._requeue(tx, task, next_attempt_at=until)
        return PARKED

    async def dead_letter(
        self, task: TaskRow, conversation: Conversation, row: ActionRow, reason: str, kind: str
    ) -> Parked:
        """Give up: the action fails, the task is a dead letter with Retry / Discard."""
        async with self._store.write() as tx:
            await self._mover.move(
                tx, row.id, ActionState.FAILED, expect=ActionState.IN_FLIGHT, error=reason[:500]
            )
            await self._mover.move(
                tx,
                task.id,
                TaskState.DEAD,
                expect=TaskState.RUNNING,
                error=reason[:300],
                event="task.dead",
                payload={"action": row.id, "error": reason[:300], "kind": kind},
            )
            if row.gate == Mode.AUTO.value:
                await self._policies.demote(tx, row.policy_key, f"action {row.id} failed")
            advice = hint(self._hints, row.connector, kind)
            summary = f"{row.summary}\nReason: {reason[:300]}\nHint: {advice}"
            await self.card(tx, task, conversation, row, summary, "dead_letter")
        await self.supervise(row.agent, conversation)
        self._on_change()
        return PARKED

    async def uncertain(
        self, task: TaskRow, conversation: Conversation, row: ActionRow, reason: str
    ) -> Parked:
        """Nobody can tell whether it landed: ask the operator (Mark done / Retry)."""
        async with self._store.write() as tx:
            await self._mover.move(
                tx,
                row.id,
                ActionState.UNCERTAIN,
                expect=ActionState.IN_FLIGHT,
                error=reason[:500],
                event="action.uncertain",
                payload={"error": reason[:300], "key": row.idempotency_key},
            )
            await self._mover.move(
                tx, task.id, TaskState.WAITING_APPROVAL, expect=TaskState.RUNNING
            )
            summary = (
                f"{row.summary}\nsoloops stopped while this was being sent ({reason[:200]})."
                f"\nCheck the other side for key {row.idempotency_key}."
            )
            await self.card(tx, task, conversation, row, summary, "reconcile")
        self._on_change()
        return PARKED

    async def over_budget(
        self, task: TaskRow, conversation: Conversation, agent: str, over: str
    ) -> Parked:
        """Hold the agent's work for the day; ask whether to extend."""
        async with self._store.write() as tx:
            await self._requeue(tx, task)
            changed = await self._lifecycle.set_state(
                tx, agent, AgentState.PAUSED, f"budget: {over}", "budget"
            )
            if changed:
                await self._desk.request(
                    tx,
                    task_id=task.id,
                    agent=agent,
                    need=NeedsApproval(
                        summary=f"{agent} reached its daily budget ({over}); its work is held.",
                        action={"budget": agent, "day": self._clock.now().date().isoformat()},
                    ),
                    conversation=conversation,
                    purpose="budget",
                    labels=("Extend today", "Keep paused"),
                )
        self._on_change()
        return PARKED

    async def supervise(self, agent: str, conversation: Conversation) -> None:
        """Mark an agent degraded when its newest tasks all failed; tell the operator."""
        if not await self._lifecycle.failing_streak(agent):
            return
        async with self._store.write() as tx:
            changed = await self._lifecycle.set_state(
                tx, agent, AgentState.DEGRADED, "repeated failures", "supervisor"
            )
            if changed:
                await self._desk.notify(
                    tx,
                    conversation,
                    error(
                        f"The {agent} agent failed several times in a row and is now"
                        f" degraded: its queued work is held. /failed shows the failures;"
                        f" /resume {agent} when the cause is fixed."
                    ),
                )

    async def card(
        self,
        tx: Transaction,
        task: TaskRow,
        conversation: Conversation,
        row: ActionRow,
        summary: str,
        purpose: str,
    ) -> None:
        """A dead-letter or reconcile card about ``row``; it waits a week for you."""
        await self._desk.request(
            tx,
            task_id=task.id,
            agent=row.agent,
            need=NeedsApproval(summary=summary, action={purpose: row.id}, ttl=timedelta(days=7)),
            conversation=conversation,
            purpose=purpose,
            labels=CARD_LABELS[purpose],
        )

    async def _requeue(
        self, tx: Transaction, task: TaskRow, next_attempt_at: datetime | None = None
    ) -> None:
        await self._mover.move(
            tx, task.id, TaskState.QUEUED, expect=TaskState.RUNNING, next_attempt_at=next_attempt_at
        )
