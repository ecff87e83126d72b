"""The inbound log: every message as received, written before it is acted on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from memory.clock import to_iso
from memory.store import Store, Transaction


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One stored inbound message (the parts adapters look back at)."""

    platform: str
    message_id: str
    chat_id: str
    thread_id: str | None
    user_id: str
    text: str


class InboundRepo:
    """Stores raw inbound messages, one row per (platform, message id)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self,
        tx: Transaction,
        *,
        platform: str,
        message_id: str,
        chat_id: str,
        thread_id: str | None,
        user_id: str,
        text: str,
        received_at: datetime,
        event_seq: int,
    ) -> bool:
        """Store a message; False when this platform message id was already stored."""
        inserted = await tx.execute(
            "INSERT OR IGNORE INTO inbound (platform, message_id, chat_id, thread_id, user_id,"
            " text, received_at, event_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                platform,
                message_id,
                chat_id,
                thread_id,
                user_id,
                text,
                to_iso(received_at),
                event_seq,
            ),
        )
        return inserted != 0

    async def seen(self, tx: Transaction, platform: str, message_id: str) -> bool:
        """Whether this platform message id is already stored (read inside ``tx``)."""
        row = await tx.fetchone(
            "SELECT 1 FROM inbound WHERE platform = ? AND message_id = ?", (platform, message_id)
        )
        return row is not None

    async def get(self, platform: str, message_id: str) -> InboundMessage | None:
        """One stored message, by its platform id."""
        row = await self._store.fetchone(
            "SELECT platform, message_id, chat_id, thread_id, user_id, text FROM inbound"
            " WHERE platform = ? AND message_id = ?",
            (platform, message_id),
        )
        if row is None:
            return None
        return InboundMessage(
            platform=row["platform"],
            message_id=row["message_id"],
            chat_id=row["chat_id"],
            thread_id=row["thread_id"],
            user_id=row["user_id"],
            text=row["text"],
        )

    async def set_thread(
        self, tx: Transaction, platform: str, message_id: str, thread_id: str
    ) -> None:
        """Record the thread a message's replies live in, once the platform has made it."""
        await tx.execute(
            "UPDATE inbound SET thread_id = ? WHERE platform = ? AND message_id = ?",
            (thread_id, platform, message_id),
        )

    async def prune_texts(
        self, before: datetime, *, after_id: int = 0, batch: int = 500
    ) -> tuple[int, int]:
        """Clear the texts of messages received before ``before`` (retention).

        The row stays (platform, ids, sender, time, its event), so a redelivered
        message is still recognised as seen; only ``text`` becomes empty. Rows are
        walked by id from ``after_id`` in short write transactions of ``batch`` rows,
        stopping at the first one received at or after ``before``.

        Returns:
            How many texts were cleared, and the last id looked at before the stop
            (the next run may start after it).
        """
        cutoff = to_iso(before)
        cleared, position = 0, after_id
        while True:
            async with self._store.write() as tx:
                rows = await tx.fetchall(
                    "SELECT id, received_at, text != '' AS has_text FROM inbound"
                    " WHERE id > ? ORDER BY id LIMIT ?",
                    (position, batch),
                )
                ids: list[int] = []
                done = not rows
                for row in rows:
                    if row["received_at"] >= cutoff:
                        done = True
                        break
                    if row["has_text"]:
                        ids.append(int(row["id"]))
                    position = int(row["id"])
                if ids:
                    marks = ",".join("?" * len(ids))
                    cleared += await tx.execute(
                        f"UPDATE inbound SET text = '' WHERE id IN ({marks})", ids
                    )
            if done:
                return cleared, position
            await asyncio.sleep(0)  # let messages in between batches

    async def count(self) -> int:
        """How many messages are stored."""
        return int(await self._store.scalar("SELECT COUNT(*) FROM inbound"))
