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

import asyncio
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction

# Published on commit: (outbox id, platform, the row as stored, the ``decoded`` body the
# caller passed, if any), so the dispatcher needs no read to send a reply it saw queued.
QUEUED_TOPIC = "outbox.queued"

# Platforms a running dispatcher of this store delivers (a frozenset in ``store.cache``):
# a reply for one of them may be claimed in the transaction that queues it.
_CLAIMERS = "outbox.claimers"

# A body at least this long is stored once in ``reply_bodies`` however many replies
# carry it (a /help is ~3.7 KB); shorter ones stay in the row, where a lookup would
# cost more than it saves.
SHARED_BODY_CHARS = 512
# Every read of a row resolves its body: its own, or the shared one it points at.
_SELECT = (
    "SELECT o.*, COALESCE(b.body, o.body) AS full_body FROM outbox o"
    " LEFT JOIN reply_bodies b ON b.id = o.body_id"
)


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
        body=row["full_body"],
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
        decoded: object = None,
        claim: bool = False,
    ) -> int:
        """Store a reply as pending; return its id.

        ``replaces`` names an earlier outbox message this one edits (a decided card).
        ``decoded`` (the reply ``body`` was written from) travels with the news of the
        commit, so whoever delivers it need not parse the body again. ``claim`` stores
        it already claimed (``sending``) for this process's running dispatcher, when
        one delivers that platform and the reply edits nothing: its delivery is then a
        send and a mark. A crash before the send leaves a ``sending`` row, which the
        next start reclaims and sends, as for any claim.
        """
        state = DeliveryState.PENDING
        if claim and replaces is None and platform in self._store.cache.get(_CLAIMERS, ()):
            state = DeliveryState.SENDING
        stamp = to_iso(now)
        body_id = None
        full_body = body
        if len(body) >= SHARED_BODY_CHARS:
            body_id = await _shared_body(tx, body)
            body = ""
        outbox_id = await tx.execute(
            "INSERT INTO outbox (platform, chat_id, thread_id, reply_to, body, next_attempt_at,"
            " task_id, created_at, replaces_outbox_id, body_id, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                platform,
                chat_id,
                thread_id,
                reply_to,
                body,
                stamp,
                task_id,
                stamp,
                replaces,
                body_id,
                state,
            ),
        )
        # The dispatcher keeps pending ids in memory instead of polling the table.
        at = from_iso(stamp)
        row = OutboxRow(
            id=outbox_id,
            platform=platform,
            chat_id=chat_id,
            thread_id=thread_id,
            reply_to=reply_to,
            body=full_body,
            state=state,
            attempts=0,
            next_attempt_at=at,
            last_error=None,
            task_id=task_id,
            sent_ref=None,
            replaces_outbox_id=replaces,
            created_at=at,
        )
        tx.publish(QUEUED_TOPIC, (outbox_id, platform, row, decoded))
        return outbox_id

    def serve(self, platforms: frozenset[str]) -> None:
        """Say which platforms this store's running dispatcher delivers (empty: none
        runs), so replies for them can be queued already claimed (``claim``)."""
        self._store.cache[_CLAIMERS] = platforms

    async def get(self, outbox_id: int) -> OutboxRow | None:
        """One outbox message."""
        row = await self._store.fetchone(f"{_SELECT} WHERE o.id = ?", (outbox_id,))
        return None if row is None else _row(row)

    async def due(self, platforms: list[str], now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Pending replies for these platforms whose next attempt is due, oldest first."""
        if not platforms:
            return []
        marks = ",".join("?" * len(platforms))
        rows = await self._store.fetchall(
            f"{_SELECT} WHERE o.state = ? AND o.platform IN ({marks})"
            " AND o.next_attempt_at <= ? ORDER BY o.id LIMIT ?",
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

    async def claim(
        self, tx: Transaction, outbox_id: int, now: datetime, known: OutboxRow | None = None
    ) -> OutboxRow | None:
        """Take a due pending row for delivery (``pending -> sending``).

        Returns the row as claimed, or None when it is no longer pending and due (another
        delivery took it, or it was already handled): the caller must not send it.
        ``known`` is the row as :meth:`enqueue` published it: a row still pending has
        not changed since (only a claim moves a pending row), so it is not read again.
        """
        changed = await tx.execute(
            "UPDATE outbox SET state = ? WHERE id = ? AND state = ? AND next_attempt_at <= ?",
            (DeliveryState.SENDING, outbox_id, DeliveryState.PENDING, to_iso(now)),
        )
        if changed != 1:
            return None
        if known is not None and known.id == outbox_id and known.attempts == 0:
            return replace(known, state=DeliveryState.SENDING)
        row = await tx.fetchone(f"{_SELECT} WHERE o.id = ?", (outbox_id,))
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
        row = await tx.fetchone(f"{_SELECT} WHERE o.id = ?", (outbox_id,))
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
            f"{_SELECT} WHERE o.platform = ? AND o.chat_id = ? AND o.thread_id IS ?"
            " ORDER BY o.id DESC LIMIT 1",
            (platform, chat_id, thread_id),
        )
        return None if row is None else _row(row)

    async def prune_delivered(
        self, before: datetime, *, after_id: int = 0, batch: int = 500
    ) -> tuple[int, int]:
        """Clear the bodies of replies delivered before ``before`` (retention).

        Only ``sent`` rows lose their body; the row (who, where, when, state, the
        platform's id) stays, and pending, sending and failed rows are not touched.
        Rows are walked by id from ``after_id`` in short write transactions of
        ``batch`` rows, stopping at the first row created at or after ``before``.
        Shared bodies no row points at any more are deleted.

        Returns:
            How many bodies were cleared, and the id up to which every row is final
            (cleared or failed): the next run may start after it.
        """
        cutoff = to_iso(before)
        cleared, watermark, position, unshared = 0, after_id, after_id, False
        while True:
            async with self._store.write() as tx:
                rows = await tx.fetchall(
                    "SELECT id, state, sent_at, created_at, body_id,"
                    " body_id IS NOT NULL OR body != '' AS has_body"
                    " FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (position, batch),
                )
                ids: list[int] = []
                stuck, done = watermark != position, not rows
                for row in rows:
                    if row["created_at"] >= cutoff:
                        done = True
                        break
                    sent_at = row["sent_at"] or row["created_at"]  # NULL only if hand-edited
                    sent_before = row["state"] == DeliveryState.SENT and sent_at < cutoff
                    if sent_before and row["has_body"]:
                        ids.append(int(row["id"]))
                        unshared = unshared or row["body_id"] is not None
                    # A row not final yet (or sent too recently) is looked at again next time.
                    stuck = stuck or not (sent_before or row["state"] == DeliveryState.FAILED)
                    position = int(row["id"])
                    if not stuck:
                        watermark = position
                if ids:
                    marks = ",".join("?" * len(ids))
                    cleared += await tx.execute(
                        f"UPDATE outbox SET body = '', body_id = NULL WHERE id IN ({marks})"
                        " AND state = ?",
                        (*ids, DeliveryState.SENT),
                    )
                if done and unshared:
                    await tx.execute(
                        "DELETE FROM reply_bodies WHERE id NOT IN"
                        " (SELECT body_id FROM outbox WHERE body_id IS NOT NULL)"
                    )
            if done:
                return cleared, watermark
            await asyncio.sleep(0)  # let messages in between batches

    async def counts(self) -> dict[DeliveryState, int]:
        """How many replies are in each delivery state."""
        # Kept by triggers (migration 8): flat in the size of history.
        rows = await self._store.fetchall("SELECT state, n FROM state_counts WHERE tbl = 'outbox'")
        counts = dict.fromkeys(DeliveryState, 0)
        for row in rows:
            counts[DeliveryState(row["state"])] = int(row["n"])
        return counts


async def _shared_body(tx: Transaction, body: str) -> int:
    """The id of ``body`` in ``reply_bodies``, stored now if it is not there yet.

    Inside the write transaction, so retention (which deletes bodies no row points at)
    cannot remove it between the lookup and the row that points at it; the foreign key
    refuses a dangling id whatever happens.
    """
    sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
    row = await tx.fetchone("SELECT id FROM reply_bodies WHERE sha = ?", (sha,))
    if row is not None:
        return int(row[0])
    return await tx.execute("INSERT INTO reply_bodies (sha, body) VALUES (?, ?)", (sha, body))
