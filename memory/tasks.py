"""Task rows: the coordinator's durable to-do list.

The rules of which state may follow which live in ``agents/`` (the coordinator owns
them); this module only stores and queries rows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction

QUEUED_TOPIC = "tasks.queued"  # published on commit: (task id, next attempt or None)


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    REFUSED = "refused"  # the request could not be done as asked: not a failure


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One stored task."""

    id: int
    idempotency_key: str
    kind: str
    agent: str
    lane: str
    state: TaskState
    intent: str
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    checkpoint: str | None


def _row(row: Any) -> TaskRow:
    return TaskRow(
        id=int(row["id"]),
        idempotency_key=row["idempotency_key"],
        kind=row["kind"],
        agent=row["agent"],
        lane=row["lane"],
        state=TaskState(row["state"]),
        intent=row["intent"],
        attempts=int(row["attempts"]),
        error=row["error"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        next_attempt_at=from_iso(row["next_attempt_at"]) if row["next_attempt_at"] else None,
        checkpoint=row["checkpoint"],
    )


class TaskRepo:
    """Queries and writes over the ``tasks`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        tx: Transaction,
        *,
        idempotency_key: str,
        kind: str,
        agent: str,
        lane: str,
        intent: str,
        now: datetime,
        finished: bool = False,
    ) -> tuple[TaskRow, bool]:
        """Insert a queued task; if the key exists, return the existing one and False.

        ``finished`` inserts it as already run to success (one attempt), for a task the
        caller runs to its end in this same transaction: one row write instead of an
        insert and an update. If that run does not finish, the caller puts it back
        with :meth:`unfinish` before the transaction ends. Nothing is published for it.
        """
        stamp = to_iso(now)
        state, attempts = (TaskState.SUCCEEDED, 1) if finished else (TaskState.QUEUED, 0)
        # One statement when new (the row is what was written; nothing to read back); a
        # duplicate inserts nothing and is read.
        task_id = await tx.execute(
            "INSERT OR IGNORE INTO tasks (idempotency_key, kind, agent, lane, state, intent,"
            " attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (idempotency_key, kind, agent, lane, state, intent, attempts, stamp, stamp),
        )
        if task_id:
            if not finished:
                tx.publish(QUEUED_TOPIC, (task_id, None))
            at = from_iso(stamp)
            created = TaskRow(
                id=task_id,
                idempotency_key=idempotency_key,
                kind=kind,
                agent=agent,
                lane=lane,
                state=state,
                intent=intent,
                attempts=attempts,
                error=None,
                created_at=at,
                updated_at=at,
                next_attempt_at=None,
                checkpoint=None,
            )
            return created, True
        row = await tx.fetchone("SELECT * FROM tasks WHERE idempotency_key = ?", (idempotency_key,))
        assert row is not None  # the key exists: that is why nothing was inserted
        return _row(row), False

    async def unfinish(self, tx: Transaction, task: TaskRow) -> TaskRow:
        """Put a task inserted ``finished`` back to queued, as a plain :meth:`create`
        would have stored it (and publish it as queued)."""
        await tx.execute(
            "UPDATE tasks SET state = ?, attempts = 0 WHERE id = ? AND state = ?",
            (TaskState.QUEUED, task.id, TaskState.SUCCEEDED),
        )
        tx.publish(QUEUED_TOPIC, (task.id, None))
        return replace(task, state=TaskState.QUEUED, attempts=0)

    async def get(self, task_id: int) -> TaskRow | None:
        """The task with this id, if any."""
        row = await self._store.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return None if row is None else _row(row)

    async def get_in(self, tx: Transaction, task_id: int) -> TaskRow | None:
        """The task with this id as the write transaction sees it."""
        row = await tx.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return None if row is None else _row(row)

    async def runnable(self, now: datetime, limit: int = 200) -> list[TaskRow]:
        """Queued tasks whose next attempt is due, oldest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM tasks WHERE state = ?"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
            (TaskState.QUEUED, to_iso(now), limit),
        )
        return [_row(row) for row in rows]

    async def queued_among(self, ids: list[int], now: datetime) -> list[TaskRow]:
        """Those of ``ids`` that are queued and due, oldest first (one read)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._store.fetchall(
            f"SELECT * FROM tasks WHERE id IN ({marks}) AND state = ?"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id",
            (*ids, TaskState.QUEUED, to_iso(now)),
        )
        return [_row(row) for row in rows]

    async def next_due_at(self, now: datetime) -> datetime | None:
        """When the earliest delayed queued task becomes due."""
        value = await self._store.scalar(
            "SELECT MIN(next_attempt_at) FROM tasks WHERE state = ? AND next_attempt_at > ?",
            (TaskState.QUEUED, to_iso(now)),
        )
        return None if value is None else from_iso(value)

    async def in_state(self, state: TaskState, limit: int = 1000) -> list[TaskRow]:
        """Tasks in one state, oldest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM tasks WHERE state = ? ORDER BY id LIMIT ?", (state, limit)
        )
        return [_row(row) for row in rows]

    async def update(
        self,
        tx: Transaction,
        task_id: int,
        *,
        state: TaskState,
        now: datetime,
        expect: TaskState | None = None,
        error: str | None = None,
        attempt: bool = False,
        checkpoint: str | None = None,
        next_attempt_at: datetime | None = None,
        reset_attempts: bool = False,
    ) -> bool:
        """Move a task to ``state``; with ``expect``, only if it is still in that state.

        ``next_attempt_at`` delays a queued task (retries, an open breaker); it is
        cleared by any other move.
        """
        sql = (
            "UPDATE tasks SET state = ?, updated_at = ?, error = ?,"
            " attempts = CASE WHEN ? THEN 0 ELSE attempts END + ?,"
            " checkpoint = COALESCE(?, checkpoint), next_attempt_at = ? WHERE id = ?"
        )
        params: list[Any] = [
            state,
            to_iso(now),
            error,
            1 if reset_attempts else 0,
            1 if attempt else 0,
            checkpoint,
            None if next_attempt_at is None else to_iso(next_attempt_at),
            task_id,
        ]
        if expect is not None:
            sql += " AND state = ?"
            params.append(expect)
        moved = await tx.execute(sql, params) == 1
        if moved and state is TaskState.QUEUED:
            # The coordinator keeps its ready queue from these instead of polling.
            tx.publish(QUEUED_TOPIC, (task_id, next_attempt_at))
        return moved

    async def set_checkpoint(self, tx: Transaction, task_id: int, checkpoint: str) -> None:
        """Record where a task is, so a resume continues from there."""
        await tx.execute("UPDATE tasks SET checkpoint = ? WHERE id = ?", (checkpoint, task_id))

    async def retarget(
        self, tx: Transaction, task_id: int, *, kind: str, agent: str, intent: str
    ) -> None:
        """Point a task at another intent and agent (the free-text router's choice)."""
        await tx.execute(
            "UPDATE tasks SET kind = ?, agent = ?, intent = ? WHERE id = ?",
            (kind, agent, intent, task_id),
        )

    async def counts(self) -> dict[TaskState, int]:
        """How many tasks are in each state (states with none are 0)."""
        # Kept by triggers (migration 8): flat in the size of history.
        rows = await self._store.fetchall("SELECT state, n FROM state_counts WHERE tbl = 'tasks'")
        counts = dict.fromkeys(TaskState, 0)
        for row in rows:
            counts[TaskState(row["state"])] = int(row["n"])
        return counts

    async def agent_stats(self, agent: str, since: datetime) -> tuple[datetime | None, int]:
        """(when the agent last finished a task, how many of its tasks failed since ``since``)."""
        row = await self._store.fetchone(
            "SELECT MAX(CASE WHEN state IN (?, ?, ?, ?) THEN updated_at END) AS last,"
            " SUM(CASE WHEN state IN (?, ?) AND updated_at >= ? THEN 1 ELSE 0 END) AS failed"
            " FROM tasks WHERE agent = ?",
            (
                TaskState.SUCCEEDED,
                TaskState.FAILED,
                TaskState.DEAD,
                TaskState.REFUSED,
                TaskState.FAILED,
                TaskState.DEAD,
                to_iso(since),
                agent,
            ),
        )
        if row is None:
            return None, 0
        last = from_iso(row["last"]) if row["last"] else None
        return last, int(row["failed"] or 0)

    async def recent_outcomes(
        self, agent: str, limit: int, exclude_kinds: frozenset[str] = frozenset()
    ) -> list[TaskState]:
        """The final states of an agent's newest finished tasks, newest first."""
        marks = ",".join("?" * len(exclude_kinds)) or "''"
        rows = await self._store.fetchall(
            "SELECT state FROM tasks WHERE agent = ? AND state IN (?, ?, ?)"
            f" AND kind NOT IN ({marks}) ORDER BY updated_at DESC, id DESC LIMIT ?",
            (agent, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, *exclude_kinds, limit),
        )
        return [TaskState(r["state"]) for r in rows]

    async def prune_finished(
        self, before: datetime, *, after_id: int = 0, batch: int = 500
    ) -> tuple[int, int]:
        """Clear the intent and checkpoint of tasks that ended well before ``before``.

        Only succeeded and cancelled tasks, which nothing runs, retries or resumes
        again; failed, refused and dead ones keep theirs (a retry or a look at why
        needs them), as do tasks still queued, running or waiting. The row stays (kind,
        agent, state, times, error, its events); ``intent`` becomes :data:`PRUNED`.
        Rows are walked by id from ``after_id`` in short write transactions, stopping
        at the first task created at or after ``before``.

        Returns:
            How many tasks were cleared, and the id up to which every task is settled
            (cleared, or ended in a state that is never cleared): the next run may
            start after it. A task still open holds that mark back until it ends.
        """
        cutoff = to_iso(before)
        cleared, settled, position = 0, after_id, after_id
        open_seen = False
        while True:
            async with self._store.write() as tx:
                rows = await tx.fetchall(
                    "SELECT id, state, created_at, updated_at,"
                    " intent != ? OR checkpoint IS NOT NULL AS has_body FROM tasks"
                    " WHERE id > ? ORDER BY id LIMIT ?",
                    (PRUNED, position, batch),
                )
                ids: list[int] = []
                done = not rows
                for row in rows:
                    if row["created_at"] >= cutoff:
                        done = True
                        break
                    position = int(row["id"])
                    state = row["state"]
                    if state in _PRUNABLE and row["updated_at"] < cutoff:
                        if row["has_body"]:
                            ids.append(position)
                    elif state not in _KEPT_FOR_GOOD:
                        open_seen = True  # may still end well: look again next run
                    if not open_seen:
                        settled = position
                if ids:
                    cleared += await _rewrite_pruned(tx, ids)
            if done:
                return cleared, settled
            await asyncio.sleep(0)  # let messages in between batches


async def _rewrite_pruned(tx: Transaction, ids: list[int]) -> int:
    """Write the rows of ``ids`` again without intent and checkpoint; return how many.

    Deleted and inserted again (same id, same everything else), not updated in place:
    a row that shrinks stays in its page, and a page of shrunk /help tasks is still
    a third full, which SQLite does not merge, so an UPDATE frees no page at all. Rows
    written again in id order are packed into as few pages as they fill. Foreign keys
    (outbox, actions and approvals point at tasks) are checked at commit, when every
    row is back; the state counters' triggers see one delete and one insert each.
    """
    marks = ",".join("?" * len(ids))
    # The state guard is the decision: a row cannot have changed state since it was
    # read in this transaction, and these states are final.
    rows = await tx.fetchall(
        f"SELECT * FROM tasks WHERE id IN ({marks}) AND state IN ({','.join('?' * len(_PRUNABLE))})"
        " ORDER BY id",
        (*ids, *_PRUNABLE),
    )
    if not rows:
        return 0
    columns = list(rows[0].keys())
    kept = [c for c in columns if c not in ("intent", "checkpoint")]
    await tx.execute("PRAGMA defer_foreign_keys = ON")
    await tx.execute(
        f"DELETE FROM tasks WHERE id IN ({','.join('?' * len(rows))})", [r["id"] for r in rows]
    )
    marks = ", ".join("?" * (len(kept) + 1))
    await tx.executemany(
        f"INSERT INTO tasks ({', '.join(kept)}, intent) VALUES ({marks})",
        [(*(r[c] for c in kept), PRUNED) for r in rows],
    )
    # Every row is back: checks are immediate again for the writes sharing this commit.
    await tx.execute("PRAGMA defer_foreign_keys = OFF")
    return len(rows)


# What a pruned task's intent reads as (retention cleared it; the row and events stay).
PRUNED = ""
# Final states whose intent nothing needs again, and final states that keep it for good.
_PRUNABLE = (TaskState.SUCCEEDED.value, TaskState.CANCELLED.value)
_KEPT_FOR_GOOD = frozenset({TaskState.FAILED.value, TaskState.REFUSED.value})
