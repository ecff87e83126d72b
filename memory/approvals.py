"""Approval rows and the button tokens that point at them.

An approval binds one exact action (its fingerprint) to a one-time decision. The
decision is a single conditional UPDATE, so two presses at once apply once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction


class ApprovalState(StrEnum):
    """Where an approval is."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """One stored approval."""

    id: int
    code: str
    task_id: int
    agent: str
    summary: str
    action: str
    fingerprint: str
    conversation: str
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    card_outbox_id: int | None
    purpose: str
    labels: tuple[str, str]
    decided_name: str | None = None  # who decided, as the platform names them ("Ana")

    @property
    def decider(self) -> str | None:
        """Who decided, for people: the display name, else the platform id."""
        return self.decided_name or self.decided_by


def _row(row: Any) -> ApprovalRow:
    return ApprovalRow(
        id=int(row["id"]),
        code=row["code"],
        task_id=int(row["task_id"]),
        agent=row["agent"],
        summary=row["summary"],
        action=row["action"],
        fingerprint=row["fingerprint"],
        conversation=row["conversation"],
        state=ApprovalState(row["state"]),
        created_at=from_iso(row["created_at"]),
        expires_at=from_iso(row["expires_at"]),
        decided_at=from_iso(row["decided_at"]) if row["decided_at"] else None,
        decided_by=row["decided_by"],
        card_outbox_id=row["card_outbox_id"],
        purpose=row["purpose"],
        labels=(json.loads(row["labels"])[0], json.loads(row["labels"])[1]),
        decided_name=row["decided_name"],
    )


class ApprovalRepo:
    """Queries and writes over ``approvals`` and ``buttons``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        tx: Transaction,
        *,
        code: str,
        task_id: int,
        agent: str,
        summary: str,
        action: str,
        fingerprint: str,
        conversation: str,
        now: datetime,
        expires_at: datetime,
        purpose: str = "action",
        labels: tuple[str, str] = ("Approve", "Reject"),
    ) -> ApprovalRow:
        """Store a pending approval."""
        approval_id = await tx.execute(
            "INSERT INTO approvals (code, task_id, agent, summary, action, fingerprint,"
            " conversation, created_at, expires_at, purpose, labels)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                code,
                task_id,
                agent,
                summary,
                action,
                fingerprint,
                conversation,
                to_iso(now),
                to_iso(expires_at),
                purpose,
                json.dumps(list(labels)),
            ),
        )
        row = await tx.fetchone("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        assert row is not None
        return _row(row)

    async def add_buttons(
        self, tx: Transaction, approval_id: int, buttons: list[tuple[str, str]], now: datetime
    ) -> None:
        """Map each ``(token, decision)`` to a decision on an approval, in one statement."""
        stamp = to_iso(now)
        await tx.executemany(
            "INSERT INTO buttons (token, approval_id, decision, created_at) VALUES (?, ?, ?, ?)",
            [(token, approval_id, decision, stamp) for token, decision in buttons],
        )

    async def buttons_of(self, tx: Transaction, approval_id: int) -> list[tuple[str, str]]:
        """(token, decision) of an approval's buttons, in card order."""
        rows = await tx.fetchall(
            "SELECT token, decision FROM buttons WHERE approval_id = ? ORDER BY rowid",
            (approval_id,),
        )
        return [(str(r["token"]), str(r["decision"])) for r in rows]

    async def pending_for(self, purpose: str) -> list[ApprovalRow]:
        """Pending approvals of one purpose, oldest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM approvals WHERE state = ? AND purpose = ? ORDER BY id",
            (ApprovalState.PENDING, purpose),
        )
        return [_row(r) for r in rows]

    async def set_decided_name(self, tx: Transaction, approval_id: int, name: str) -> None:
        """Keep the display name of whoever decided (the platform's, with the press)."""
        await tx.execute(
            "UPDATE approvals SET decided_name = ? WHERE id = ?", (name[:128], approval_id)
        )

    async def set_card(self, tx: Transaction, approval_id: int, outbox_id: int) -> None:
        """Remember which outbox message is the approval's card."""
        await tx.execute(
            "UPDATE approvals SET card_outbox_id = ? WHERE id = ?", (outbox_id, approval_id)
        )

    async def button(self, tx: Transaction, token: str) -> tuple[ApprovalRow, str] | None:
        """The approval and decision a button token stands for."""
        row = await tx.fetchone(
            "SELECT a.*, b.decision AS button_decision FROM buttons b"
            " JOIN approvals a ON a.id = b.approval_id WHERE b.token = ?",
            (token,),
        )
        return None if row is None else (_row(row), str(row["button_decision"]))

    async def by_code(self, tx: Transaction, code: str) -> ApprovalRow | None:
        """The approval with this short code."""
        row = await tx.fetchone("SELECT * FROM approvals WHERE code = ?", (code,))
        return None if row is None else _row(row)

    async def get(self, approval_id: int) -> ApprovalRow | None:
        """The approval with this id."""
        row = await self._store.fetchone("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return None if row is None else _row(row)

    async def decide(
        self,
        tx: Transaction,
        approval_id: int,
        *,
        state: ApprovalState,
        by: str,
        now: datetime,
    ) -> bool:
        """Record a decision if the approval is still pending and unexpired; True if it was."""
        changed = await tx.execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?"
            " WHERE id = ? AND state = ? AND expires_at > ?",
            (state, by, to_iso(now), approval_id, ApprovalState.PENDING, to_iso(now)),
        )
        return changed == 1

    async def expire(self, tx: Transaction, approval_id: int, now: datetime) -> bool:
        """Mark a pending approval whose time is up as expired."""
        changed = await tx.execute(
            "UPDATE approvals SET state = ?, decided_by = 'expiry', decided_at = ?"
            " WHERE id = ? AND state = ? AND expires_at <= ?",
            (ApprovalState.EXPIRED, to_iso(now), approval_id, ApprovalState.PENDING, to_iso(now)),
        )
        return changed == 1

    async def void(
        self,
        tx: Transaction,
        approval_id: int,
        now: datetime,
        expect: ApprovalState | None = None,
    ) -> bool:
        """Void an approval (its action changed): from ``expect``, or from any state."""
        sql = "UPDATE approvals SET state = ?, decided_by = 'system', decided_at = ? WHERE id = ?"
        params: list[object] = [ApprovalState.VOIDED, to_iso(now), approval_id]
        if expect is not None:
            sql += " AND state = ?"
            params.append(expect)
        return await tx.execute(sql, params) == 1

    async def overdue(self, now: datetime, limit: int = 100) -> list[ApprovalRow]:
        """Pending approvals whose time is up."""
        rows = await self._store.fetchall(
            "SELECT * FROM approvals WHERE state = ? AND expires_at <= ? ORDER BY id LIMIT ?",
            (ApprovalState.PENDING, to_iso(now), limit),
        )
        return [_row(r) for r in rows]

    async def pending(self, limit: int = 50) -> list[ApprovalRow]:
        """Approvals still waiting for a decision, oldest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM approvals WHERE state = ? ORDER BY id LIMIT ?",
            (ApprovalState.PENDING, limit),
        )
        return [_row(r) for r in rows]

    async def next_expiry(self) -> datetime | None:
        """When the next pending approval expires."""
        value = await self._store.scalar(
            "SELECT MIN(expires_at) FROM approvals WHERE state = ?", (ApprovalState.PENDING,)
        )
        return None if value is None else from_iso(value)
