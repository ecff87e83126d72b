"""The outbox: every reply is stored here before it is delivered.

A row goes ``pending -> sending -> sent | failed`` (or back to ``pending`` for a retry).
Delivery first *claims* a row (``pending -> sending``, checked inside the write
transaction, so one claimer wins), then sends, then marks it sent only from
``sending``: a row is never handed to a platform twice while the process runs. A
crash between the send and the mark leaves ``sending`` rows, which :meth:`reclaim`
returns to ``pending`` at the next start: after a crash a reply may go out twice
(at-least-once), never because of load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction

QUEUED_TOPIC = "outbox.queued"  # published on commit: (outbox id, platform)


class DeliveryState(StrEnum):
    """Where a reply is on its way out."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored reply."""

    id: int
    platform: str
    chat_id: str
    thread_id: str | None
    reply_to: str | None
    body: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    task_id: int | None
    sent_ref: str | None
    replaces_outbox_id: int | None
    created_at: datetime
    pieces_sent: int = 0  # pieces of a split reply already delivered (a retry skips them)


def _row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=int(row["id"]),
        platform=row["platform"],
        chat_id=row["chat_id"],
        thread_id=row["thread_id"],
        reply_to=row["reply_to"],
        body=row["body"],
        state=DeliveryState(row["state"]),
        attempts=int(row["attempts"]),
        next_attempt_at=from_iso(row["next_attempt_at"]),
        last_error=row["last_error"],
        task_id=row["task_id"],
        sent_ref=row["sent_ref"],
        replaces_outbox_id=row["replaces_outbox_id"],
        created_at=from_iso(row["created_at"]),
        pieces_sent=int(row["pieces_sent"]),
    )


class OutboxRepo:
    """Queries and writes over the ``outbox`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def enqueue(
        self,
        tx: Transaction,
        *,
        platform: str,
        chat_id: str,
        thread_id: str | None,
        reply_to: str | None,
        body: str,
        now: datetime,
        task_id: int | None = None,
        replaces: int | None = None,
    ) -> int:
        """Store a reply as pending; return its id.

        ``replaces`` names an earlier outbox message this one edits (a decided card).
        """
        stamp = to_iso(now)
        outbox_id = await tx.execute(
            "INSERT INTO outbox (platform, chat_id, thread_id, reply_to, body, next_attempt_at,"
            " task_id, created_at, replaces_outbox_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (platform, chat_id, thread_id, reply_to, body, stamp, task_id, stamp, replaces),
        )
        # The dispatcher keeps pending ids in memory instead of polling the table.
        tx.publish(QUEUED_TOPIC, (outbox_id, platform))
        return outbox_id

    async def get(self, outbox_id: int) -> OutboxRow | None:
        """One outbox message."""
        row = await self._store.fetchone("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return None if row is None else _row(row)

    async def due(self, platforms: list[str], now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Pending replies for these platforms whose next attempt is due, oldest first."""
        if not platforms:
            return []
        marks = ",".join("?" * len(platforms))
        rows = await self._store.fetchall(
            f"SELECT * FROM outbox WHERE state = ? AND platform IN ({marks})"
            " AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            (DeliveryState.PENDING, *platforms, to_iso(now), limit),
        )
        return [_row(row) for row in rows]

    async def next_due_at(self, platforms: list[str]) -> datetime | None:
        """When the earliest pending reply for these platforms is due."""
        if not platforms:
            return None
        marks = ",".join("?" * len(platforms))
        value = await self._store.scalar(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE state = ? AND platform IN ({marks})",
            (DeliveryState.PENDING, *platforms),
        )
        return None if value is None else from_iso(value)

    async def claim(self, tx: Transaction, outbox_id: int, now: datetime) -> OutboxRow | None:
        """Take a due pending row for delivery (``pending -> sending``).

        Returns the row as claimed, or None when it is no longer pending and due (another
        delivery took it, or it was already handled): the caller must not send it.
        """
        changed = await tx.execute(
            "UPDATE outbox SET state = ? WHERE id = ? AND state = ? AND next_attempt_at <= ?",
            (DeliveryState.SENDING, outbox_id, DeliveryState.PENDING, to_iso(now)),
        )
        if changed != 1:
            return None
        row = await tx.fetchone("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return None if row is None else _row(row)

    async def reclaim(self, tx: Transaction) -> int:
        """Return rows left ``sending`` by a crash to ``pending``; how many there were.

        Run at start, before delivery begins: such a reply may have reached the
        platform already, so it can arrive twice (at-least-once after a crash).
        """
        return await tx.execute(
            "UPDATE outbox SET state = ? WHERE state = ?",
            (DeliveryState.PENDING, DeliveryState.SENDING),
        )

    async def state_in(self, tx: Transaction, outbox_id: int) -> OutboxRow | None:
        """One outbox message as the write transaction sees it (committed state)."""
        row = await tx.fetchone("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return None if row is None else _row(row)

    async def mark_sent(
        self, tx: Transaction, outbox_id: int, now: datetime, sent_ref: str | None = None
    ) -> bool:
        """Record a delivery of a claimed row and the platform's id for its message.

        Returns False (and changes nothing) when the row was not ``sending``.
        """
        changed = await tx.execute(
            "UPDATE outbox SET state = ?, sent_at = ?, attempts = attempts + 1, sent_ref = ?"
            " WHERE id = ? AND state = ?",
            (DeliveryState.SENT, to_iso(now), sent_ref, outbox_id, DeliveryState.SENDING),
        )
        return changed == 1

    async def mark_pieces_sent(
        self, tx: Transaction, outbox_id: int, pieces: int, sent_ref: str | None
    ) -> None:
        """Record that the first ``pieces`` of a claimed split reply went out (and the
        last one's platform id), so a retry after a failure or a crash sends the rest."""
        await tx.execute(
            "UPDATE outbox SET pieces_sent = ?, sent_ref = ? WHERE id = ? AND state = ?",
            (pieces, sent_ref, outbox_id, DeliveryState.SENDING),
        )

    async def mark_retry(
        self, tx: Transaction, outbox_id: int, error: str, next_at: datetime
    ) -> None:
        """Record a failed attempt that will be tried again at ``next_at`` (back to pending)."""
        await tx.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ? WHERE id = ? AND state IN (?, ?)",
            (
                DeliveryState.PENDING,
                error,
                to_iso(next_at),
                outbox_id,
                DeliveryState.PENDING,
                DeliveryState.SENDING,
            ),
        )

    async def mark_failed(self, tx: Transaction, outbox_id: int, error: str) -> None:
        """Record a delivery the platform refused for good."""
        await tx.execute(
            "UPDATE outbox SET state = ?, attempts = attempts + 1, last_error = ?"
            " WHERE id = ? AND state IN (?, ?)",
            (DeliveryState.FAILED, error, outbox_id, DeliveryState.PENDING, DeliveryState.SENDING),
        )

    async def latest_for(
        self, tx: Transaction, platform: str, chat_id: str, thread_id: str | None
    ) -> OutboxRow | None:
        """The newest reply queued for one conversation (thread), if any."""
        row = await tx.fetchone(
            "SELECT * FROM outbox WHERE platform = ? AND chat_id = ? AND thread_id IS ?"
            " ORDER BY id DESC LIMIT 1",
            (platform, chat_id, thread_id),
        )
        return None if row is None else _row(row)

    async def counts(self) -> dict[DeliveryState, int]:
        """How many replies are in each delivery state."""
        # Kept by triggers (migration 8): flat in the size of history.
        rows = await self._store.fetchall("SELECT state, n FROM state_counts WHERE tbl = 'outbox'")
        counts = dict.fromkeys(DeliveryState, 0)
        for row in rows:
            counts[DeliveryState(row["state"])] = int(row["n"])
        return counts
