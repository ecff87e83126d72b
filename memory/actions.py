"""Action rows: every external side effect, recorded before it is attempted.

States::

    pending_approval -> approved -> in_flight -> succeeded
                     -> rejected            \\-> approved (transient: retry later)
                                             \\-> failed (permanent or exhausted)
    in_flight after a crash -> reconciled (succeeded | approved | awaiting the operator)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction


class ActionState(StrEnum):
    """Where an action is."""

    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    IN_FLIGHT = "in_flight"
    UNCERTAIN = "uncertain"  # crashed in flight and the connector cannot tell: the operator decides
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One stored action."""

    id: int
    task_id: int
    agent: str
    name: str
    connector: str
    operation: str
    params: dict[str, Any]
    summary: str
    risk: dict[str, Any]
    compensation: dict[str, Any] | None
    idempotency_key: str
    fingerprint: str
    gate: str
    state: ActionState
    attempts: int
    result: dict[str, Any] | None
    error: str | None
    undo_of: int | None
    created_at: datetime
    updated_at: datetime
    editable: str | None = None  # the parameter /edit may replace, if any

    @property
    def policy_key(self) -> str:
        """The policy this action falls under: ``<agent>.<name>``."""
        return f"{self.agent}.{self.name}"


def _row(row: Any) -> ActionRow:
    return ActionRow(
        id=int(row["id"]),
        task_id=int(row["task_id"]),
        agent=row["agent"],
        name=row["name"],
        connector=row["connector"],
        operation=row["operation"],
        params=json.loads(row["params"]),
        summary=row["summary"],
        risk=json.loads(row["risk"]),
        compensation=json.loads(row["compensation"]) if row["compensation"] else None,
        idempotency_key=row["idempotency_key"],
        fingerprint=row["fingerprint"],
        gate=row["gate"],
        state=ActionState(row["state"]),
        attempts=int(row["attempts"]),
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        undo_of=row["undo_of"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
        editable=row["editable"],
    )


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class ActionRepo:
    """Queries and writes over ``actions``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        tx: Transaction,
        *,
        task_id: int,
        agent: str,
        name: str,
        connector: str,
        operation: str,
        params: dict[str, Any],
        summary: str,
        risk: dict[str, Any],
        compensation: dict[str, Any] | None,
        idempotency_key: str,
        fingerprint: str,
        gate: str,
        state: ActionState,
        now: datetime,
        undo_of: int | None = None,
        editable: str | None = None,
    ) -> ActionRow:
        """Record an intended action."""
        stamp = to_iso(now)
        action_id = await tx.execute(
            "INSERT INTO actions (task_id, agent, name, connector, operation, params, summary,"
            " risk, compensation, idempotency_key, fingerprint, gate, state, undo_of,"
            " created_at, updated_at, editable)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task_id,
                agent,
                name,
                connector,
                operation,
                _dump(params),
                summary,
                _dump(risk),
                None if compensation is None else _dump(compensation),
                idempotency_key,
                fingerprint,
                gate,
                state,
                undo_of,
                stamp,
                stamp,
                editable,
            ),
        )
        row = await tx.fetchone("SELECT * FROM actions WHERE id = ?", (action_id,))
        assert row is not None
        return _row(row)

    async def waiting_for_approval(self, tx: Transaction, task_id: int) -> ActionRow | None:
        """The task's action that waits for the operator's approval, if any."""
        row = await tx.fetchone(
            "SELECT * FROM actions WHERE task_id = ? AND state = ? ORDER BY id DESC LIMIT 1",
            (task_id, ActionState.PENDING_APPROVAL),
        )
        return None if row is None else _row(row)

    async def replace_params(
        self,
        tx: Transaction,
        action_id: int,
        *,
        params: dict[str, Any],
        summary: str,
        fingerprint: str,
        now: datetime,
    ) -> bool:
        """Change a pending action's parameters (an operator's edit); False if not pending."""
        changed = await tx.execute(
            "UPDATE actions SET params = ?, summary = ?, fingerprint = ?, updated_at = ?"
            " WHERE id = ? AND state = ?",
            (
                _dump(params),
                summary,
                fingerprint,
                to_iso(now),
                action_id,
                ActionState.PENDING_APPROVAL,
            ),
        )
        return changed == 1

    async def get(self, action_id: int, tx: Transaction | None = None) -> ActionRow | None:
        """One action (read inside ``tx`` when given)."""
        sql, params = "SELECT * FROM actions WHERE id = ?", (action_id,)
        row = await (tx.fetchone(sql, params) if tx else self._store.fetchone(sql, params))
        return None if row is None else _row(row)

    async def update(
        self,
        tx: Transaction,
        action_id: int,
        *,
        state: ActionState,
        now: datetime,
        expect: ActionState | tuple[ActionState, ...] | None = None,
        attempt: bool = False,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Move an action to ``state`` (only from ``expect`` when given)."""
        sql = (
            "UPDATE actions SET state = ?, updated_at = ?, attempts = attempts + ?,"
            " result = COALESCE(?, result), error = ? WHERE id = ?"
        )
        params: list[Any] = [
            state,
            to_iso(now),
            1 if attempt else 0,
            None if result is None else _dump(result),
            error,
            action_id,
        ]
        if expect is not None:
            expected = (expect,) if isinstance(expect, ActionState) else expect
            sql += f" AND state IN ({','.join('?' * len(expected))})"
            params.extend(expected)
        return await tx.execute(sql, params) == 1

    async def retry(self, tx: Transaction, action_id: int, now: datetime) -> bool:
        """Send a failed action again, same key, fresh attempts (a dead letter's Retry)."""
        return (
            await tx.execute(
                "UPDATE actions SET state = ?, attempts = 0, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (ActionState.APPROVED, to_iso(now), action_id, ActionState.FAILED),
            )
            == 1
        )

    async def in_state(self, *states: ActionState) -> list[ActionRow]:
        """Actions in any of these states, oldest first."""
        marks = ",".join("?" * len(states))
        rows = await self._store.fetchall(
            f"SELECT * FROM actions WHERE state IN ({marks}) ORDER BY id", states
        )
        return [_row(r) for r in rows]

    async def count_for_task(self, tx: Transaction, task_id: int) -> int:
        """How many actions a task has proposed so far."""
        row = await tx.fetchone("SELECT COUNT(*) AS n FROM actions WHERE task_id = ?", (task_id,))
        return 0 if row is None else int(row["n"])

    async def runs(self, agent: str, name: str) -> int:
        """How many times this agent's action has succeeded (for 'first N runs' rules)."""
        return int(
            await self._store.scalar(
                "SELECT COUNT(*) FROM actions WHERE agent = ? AND name = ? AND state = ?",
                (agent, name, ActionState.SUCCEEDED),
            )
        )

    async def started_since(self, agent: str, since: datetime) -> int:
        """Actions of ``agent`` that were attempted since ``since`` (for daily budgets)."""
        return int(
            await self._store.scalar(
                "SELECT COUNT(*) FROM actions WHERE agent = ? AND created_at >= ? AND attempts > 0",
                (agent, to_iso(since)),
            )
        )

    async def last_undoable(self) -> ActionRow | None:
        """The newest succeeded action that is not itself an undo and was not undone."""
        row = await self._store.fetchone(
            "SELECT * FROM actions a WHERE state = ? AND undo_of IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM actions u WHERE u.undo_of = a.id"
            " AND u.state NOT IN (?, ?, ?)) ORDER BY id DESC LIMIT 1",
            (
                ActionState.SUCCEEDED,
                ActionState.REJECTED,
                ActionState.DISCARDED,
                ActionState.FAILED,
            ),
        )
        return None if row is None else _row(row)
