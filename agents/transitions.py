"""The one way to move a task, an action or an approval to a new state.

:meth:`Mover.move` checks the move against the state tables (``agents/states.py``),
applies it conditionally (only from the expected state) and appends its event in the
same transaction. Every state change in ``agents/`` goes through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.states import check_transition
from memory.actions import ActionRepo, ActionState
from memory.approvals import ApprovalRepo, ApprovalState
from memory.clock import Clock
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskState

State = TaskState | ActionState | ApprovalState


@dataclass(frozen=True, slots=True)
class Moved:
    """A move that happened; ``seq`` is its event's number (None: no event)."""

    seq: int | None = None


_NOUNS = {TaskState: "task", ActionState: "action", ApprovalState: "approval"}


class Mover:
    """Moves rows between states, each move checked and recorded."""

    def __init__(self, store: Store, events: EventLog, clock: Clock) -> None:
        self._events = events
        self._clock = clock
        self._tasks = TaskRepo(store)
        self._actions = ActionRepo(store)
        self._approvals = ApprovalRepo(store)

    async def move(
        self,
        tx: Transaction,
        row_id: int,
        new: State,
        *,
        expect: State,
        event: str | None = None,
        actor: str = "coordinator",
        payload: dict[str, Any] | None = None,
        **changes: Any,
    ) -> Moved | None:
        """Move row ``row_id`` (a task, action or approval, by the state's type) from
        ``expect`` to ``new``; append ``event`` (subject ``<noun>:<id>``) if it moved.

        ``changes`` are the repository's extra columns (``error``, ``checkpoint`` as a
        dict, ``next_attempt_at``, ``attempt``, ``result``, ``by``...). Returns whether
        :class:`Moved` if the row was still in ``expect`` (and so moved), else None.
        """
        check_transition(expect, new)
        now = self._clock.now()
        if isinstance(new, TaskState):
            checkpoint = changes.pop("checkpoint", None)
            if checkpoint is not None:
                changes["checkpoint"] = json.dumps(checkpoint)
            task_expect = TaskState(expect)
            moved = await self._tasks.update(
                tx, row_id, state=new, now=now, expect=task_expect, **changes
            )
        elif isinstance(new, ActionState):
            moved = await self._move_action(tx, row_id, new, ActionState(expect), now, changes)
        else:
            moved = await self._move_approval(tx, row_id, new, ApprovalState(expect), now, changes)
        if not moved:
            return None
        if event is None:
            return Moved()
        seq = await self._events.append(
            tx, event, actor=actor, subject=f"{_NOUNS[type(new)]}:{row_id}", payload=payload or {}
        )
        return Moved(seq)

    async def _move_action(
        self,
        tx: Transaction,
        row_id: int,
        new: ActionState,
        expect: ActionState,
        now: datetime,
        changes: dict[str, Any],
    ) -> bool:
        if expect is ActionState.FAILED and new is ActionState.APPROVED:
            return await self._actions.retry(tx, row_id, now)  # fresh attempts, same key
        return await self._actions.update(tx, row_id, state=new, now=now, expect=expect, **changes)

    async def _move_approval(
        self,
        tx: Transaction,
        row_id: int,
        new: ApprovalState,
        expect: ApprovalState,
        now: datetime,
        changes: dict[str, Any],
    ) -> bool:
        if new is ApprovalState.VOIDED:
            return await self._approvals.void(tx, row_id, now, expect=expect)
        if new is ApprovalState.EXPIRED:
            return await self._approvals.expire(tx, row_id, now)
        return await self._approvals.decide(tx, row_id, state=new, by=changes["by"], now=now)

    async def run_through(
        self, tx: Transaction, task_id: int, new: TaskState, **changes: Any
    ) -> Moved | None:
        """Move a queued task through running to ``new`` in one update (a task run to its
        end in the transaction that claims it); the caller appends both moves' events.

        Both steps are checked against the state table as two moves would be; returns
        None (nothing changed) if the task was no longer queued.
        """
        check_transition(TaskState.QUEUED, TaskState.RUNNING)
        check_transition(TaskState.RUNNING, new)
        moved = await self._tasks.update(
            tx,
            task_id,
            state=new,
            now=self._clock.now(),
            expect=TaskState.QUEUED,
            attempt=True,
            **changes,
        )
        return Moved() if moved else None

    async def advance(
        self,
        tx: Transaction,
        task_id: int,
        new: TaskState,
        event: str | None,
        payload: dict[str, Any],
        **changes: Any,
    ) -> Moved | None:
        """Move a task the coordinator holds: queued -> running, or running -> ``new``."""
        expect = TaskState.QUEUED if new is TaskState.RUNNING else TaskState.RUNNING
        return await self.move(
            tx, task_id, new, expect=expect, event=event, payload=payload, **changes
        )
