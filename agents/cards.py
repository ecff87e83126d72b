"""What the operator's answer on a dead-letter, reconcile or budget card does.

The approval desk applies the decision itself (once, atomically); these handlers run
inside that same transaction and move the action and its task accordingly.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agents.approvals import ApprovalDesk
from agents.lifecycle import Lifecycle
from agents.states import check_transition
from memory.actions import ActionRepo, ActionState
from memory.approvals import ApprovalRow, ApprovalState
from memory.clock import Clock
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskState


class CardHandlers:
    """Handlers for the executor's card purposes."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        lifecycle: Lifecycle,
        clock: Clock,
        on_change: Callable[[], None],
    ) -> None:
        self._actions = ActionRepo(store)
        self._tasks = TaskRepo(store)
        self._events = events
        self._lifecycle = lifecycle
        self._clock = clock
        self._on_change = on_change

    async def dead_letter(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        action_id = int(json.loads(card.action)["dead_letter"])
        now = self._clock.now()
        if state is ApprovalState.APPROVED:  # Retry: same idempotency key, fresh attempts
            await self._actions.retry(tx, action_id, now)
            check_transition(TaskState.DEAD, TaskState.QUEUED)
            await self._tasks.update(
                tx,
                card.task_id,
                state=TaskState.QUEUED,
                now=now,
                expect=TaskState.DEAD,
                reset_attempts=True,
            )
            await self._events.append(
                tx,
                "task.retried",
                actor=card.decided_by or "operator",
                subject=f"task:{card.task_id}",
                payload={"action": action_id},
            )
        elif state is ApprovalState.REJECTED:  # Discard
            await self._actions.update(
                tx, action_id, state=ActionState.DISCARDED, now=now, expect=ActionState.FAILED
            )
            check_transition(TaskState.DEAD, TaskState.CANCELLED)
            await self._tasks.update(
                tx, card.task_id, state=TaskState.CANCELLED, now=now, expect=TaskState.DEAD
            )
            await self._events.append(
                tx,
                "task.discarded",
                actor=card.decided_by or "operator",
                subject=f"task:{card.task_id}",
                payload={"action": action_id},
            )
        self._on_change()

    async def reconcile(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        action_id = int(json.loads(card.action)["reconcile"])
        now = self._clock.now()
        if state is ApprovalState.APPROVED:  # Mark done
            await self._actions.update(
                tx,
                action_id,
                state=ActionState.SUCCEEDED,
                now=now,
                result={"summary": f"marked done by {card.decided_by}", "detail": {}},
                expect=ActionState.UNCERTAIN,
            )
        elif state is ApprovalState.REJECTED:  # Retry: the operator checked it did not land
            await self._actions.update(
                tx, action_id, state=ActionState.APPROVED, now=now, expect=ActionState.UNCERTAIN
            )
        else:  # expired: nobody checked; leave it failed, visible in /failed
            await self._actions.update(
                tx,
                action_id,
                state=ActionState.FAILED,
                now=now,
                error="nobody confirmed it",
                expect=ActionState.UNCERTAIN,
            )
            await self._tasks.update(
                tx,
                card.task_id,
                state=TaskState.DEAD,
                now=now,
                expect=TaskState.WAITING_APPROVAL,
                error="nobody confirmed whether the action landed",
            )
            return
        await self._tasks.update(
            tx, card.task_id, state=TaskState.QUEUED, now=now, expect=TaskState.WAITING_APPROVAL
        )
        self._on_change()

    async def budget(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        if state is ApprovalState.APPROVED:
            await self._lifecycle.extend_today(tx, card.agent, card.decided_by or "operator")
            self._on_change()


def register_card_handlers(
    desk: ApprovalDesk,
    store: Store,
    events: EventLog,
    lifecycle: Lifecycle,
    clock: Clock,
    on_change: Callable[[], None],
) -> None:
    """Teach the desk what Retry/Discard, Mark done/Retry and Extend today do."""
    handlers = CardHandlers(store, events, lifecycle, clock, on_change)
    desk.handlers["dead_letter"] = handlers.dead_letter
    desk.handlers["reconcile"] = handlers.reconcile
    desk.handlers["budget"] = handlers.budget
