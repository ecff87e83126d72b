"""The inbound log: every message as received, written before it is acted on."""

from __future__ import annotations

from datetime import datetime

from memory.clock import to_iso
from memory.store import Store, Transaction


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

    async def seen(self, platform: str, message_id: str) -> bool:
        """Whether this platform message id is already stored."""
        row = await self._store.fetchone(
            "SELECT 1 FROM inbound WHERE platform = ? AND message_id = ?", (platform, message_id)
        )
        return row is not None

    async def count(self) -> int:
        """How many messages are stored."""
        return int(await self._store.scalar("SELECT COUNT(*) FROM inbound"))
