"""What the operator's answer on a dead-letter, reconcile or budget card does.

The approval desk applies the decision itself (once, atomically); these handlers run
inside that same transaction and move the action and its task accordingly, each move
through :class:`~agents.transitions.Mover`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from agents.approvals import ApprovalDesk
from agents.lifecycle import Lifecycle
from agents.transitions import Mover
from memory.actions import ActionState
from memory.approvals import ApprovalRow, ApprovalState
from memory.store import Transaction
from memory.tasks import TaskState


class CardHandlers:
    """Handlers for the executor's card purposes."""

    def __init__(self, mover: Mover, lifecycle: Lifecycle, on_change: Callable[[], None]) -> None:
        self._mover = mover
        self._lifecycle = lifecycle
        self._on_change = on_change

    async def dead_letter(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        action_id = int(json.loads(card.action)["dead_letter"])
        by = card.decided_by or "operator"
        if state is ApprovalState.APPROVED:  # Retry: same idempotency key, fresh attempts
            await self._mover.move(tx, action_id, ActionState.APPROVED, expect=ActionState.FAILED)
            await self._mover.move(
                tx,
                card.task_id,
                TaskState.QUEUED,
                expect=TaskState.DEAD,
                reset_attempts=True,
                event="task.retried",
                actor=by,
                payload={"action": action_id},
            )
        elif state is ApprovalState.REJECTED:  # Discard
            await self._mover.move(tx, action_id, ActionState.DISCARDED, expect=ActionState.FAILED)
            await self._mover.move(
                tx,
                card.task_id,
                TaskState.CANCELLED,
                expect=TaskState.DEAD,
                event="task.discarded",
                actor=by,
                payload={"action": action_id},
            )
        self._on_change()

    async def reconcile(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        action_id = int(json.loads(card.action)["reconcile"])
        by = card.decided_by or "operator"
        uncertain = ActionState.UNCERTAIN
        if state is ApprovalState.APPROVED:  # Mark done
            done = {"summary": f"marked done by {card.decided_by}", "detail": {}}
            await self._mover.move(
                tx, action_id, ActionState.SUCCEEDED, expect=uncertain, result=done
            )
        elif state is ApprovalState.REJECTED:  # Retry: the operator checked it did not land
            await self._mover.move(tx, action_id, ActionState.APPROVED, expect=uncertain)
        else:  # expired: nobody checked; leave it failed, visible in /failed
            await self._mover.move(
                tx, action_id, ActionState.FAILED, expect=uncertain, error="nobody confirmed it"
            )
            await self._mover.move(
                tx,
                card.task_id,
                TaskState.DEAD,
                expect=TaskState.WAITING_APPROVAL,
                error="nobody confirmed whether the action landed",
                event="task.dead",
                actor="expiry",
                payload={"action": action_id, "kind": "unconfirmed"},
            )
            return
        await self._mover.move(
            tx,
            card.task_id,
            TaskState.QUEUED,
            expect=TaskState.WAITING_APPROVAL,
            event="task.resumed",
            actor=by,
            payload={"approval": card.id, "decision": state.value},
        )
        self._on_change()

    async def budget(self, tx: Transaction, card: ApprovalRow, state: ApprovalState) -> None:
        if state is ApprovalState.APPROVED:
            await self._lifecycle.extend_today(tx, card.agent, card.decided_by or "operator")
            self._on_change()


def register_card_handlers(
    desk: ApprovalDesk, mover: Mover, lifecycle: Lifecycle, on_change: Callable[[], None]
) -> None:
    """Teach the desk what Retry/Discard, Mark done/Retry and Extend today do."""
    handlers = CardHandlers(mover, lifecycle, on_change)
    desk.handlers["dead_letter"] = handlers.dead_letter
    desk.handlers["reconcile"] = handlers.reconcile
    desk.handlers["budget"] = handlers.budget
