"""The running soloops clears old reply bodies and message texts at start (retention)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

from bot.console import ConsoleSender
from bot.inbound import Inbound
from bot.runtime import open_runtime
from config import Settings
from memory.clock import ManualClock
from memory.inbound import InboundRepo
from memory.outbox import OutboxRepo
from tests.bot.test_fast_path import CountingEmbedder


def _inbound(clock: ManualClock, message_id: str) -> Inbound:
    return Inbound(
        platform="console",
        message_id=message_id,
        chat_id="local",
        user_id="op",
        text="/help",
        received_at=clock.now(),
    )


async def test_old_help_replies_lose_their_bodies_at_the_next_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", retention={"days": 1})
    clock = ManualClock(datetime(2026, 5, 1, 9, 0, tzinfo=UTC))
    async with open_runtime(
        settings, [ConsoleSender(io.StringIO())], clock=clock, embedder=CountingEmbedder()
    ) as runtime:
        await runtime.gateway.handle(_inbound(clock, "old"))
        await runtime.settle()
        old_reply = int(await runtime.store.scalar("SELECT MAX(id) FROM outbox"))
        old = await OutboxRepo(runtime.store).get(old_reply)
        assert old is not None and "/help" in old.body  # stored once, by hash
        assert await runtime.store.scalar("SELECT COUNT(*) FROM reply_bodies") == 1
    clock.advance(days=2)
    async with open_runtime(
        settings, [ConsoleSender(io.StringIO())], clock=clock, embedder=CountingEmbedder()
    ) as runtime:
        assert runtime.retention is not None
        await asyncio.wait_for(runtime.retention.wait_runs(1), 30)  # a safety net only
        await runtime.gateway.handle(_inbound(clock, "new"))
        await runtime.settle()
        store = runtime.store
        outbox, inbound = OutboxRepo(store), InboundRepo(store)
        old = await outbox.get(old_reply)
        assert old is not None and old.body == "" and old.state.value == "sent"
        new = await outbox.get(int(await store.scalar("SELECT MAX(id) FROM outbox")))
        assert new is not None and "/help" in new.body
        asked_then, asked_now = (
            await inbound.get("console", "old"),
            await inbound.get("console", "new"),
        )
        assert asked_then is not None and asked_then.text == ""
        assert asked_now is not None and asked_now.text == "/help"
        assert [e.kind for e in await runtime.events.query(kind="retention")] == [
            "retention.pruned"
        ]
        assert (await runtime.events.verify()).ok
