"""The inbound log: every message as received, written before it is acted on."""

from __future__ import annotations

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

    async def count(self) -> int:
        """How many messages are stored."""
        return int(await self._store.scalar("SELECT COUNT(*) FROM inbound"))
