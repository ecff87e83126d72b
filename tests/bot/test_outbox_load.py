"""Replies are never delivered twice, even with the machine under load (issue 10.3)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.inbound import Inbound
from bot.outbox import Delivery
from bot.runtime import open_runtime
from config import Settings
from memory.outbox import DeliveryState
from tests.harness.common import NoModel

MESSAGES = 3000
BATCH = 60
TEXTS = ("/frobnicate", "/frobnicate", "/notes")


class CountingSender:
    """A platform that takes every reply and counts deliveries per outbox row."""

    platform = "console"

    def __init__(self) -> None:
        self.sent: Counter[int] = Counter()

    async def send(self, delivery: Delivery) -> str | None:
        self.sent[delivery.row.id] += 1
        await asyncio.sleep(0)  # let other work interleave with the delivery
        return None


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """A process spinning on one core for the whole test."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


async def test_no_reply_is_sent_twice_under_load(settings: Settings, cpu_hog: None) -> None:
    sender = CountingSender()
    async with open_runtime(settings, [sender], embedder=NoModel()) as runtime:
        for start in range(0, MESSAGES, BATCH):
            await asyncio.gather(
                *(
                    runtime.gateway.handle(
                        Inbound(
                            platform="console",
                            message_id=f"m{n}",
                            chat_id="local",
                            user_id="op",
                            text=TEXTS[n % len(TEXTS)],
                            received_at=datetime.now(UTC),
                        )
                    )
                    for n in range(start, start + BATCH)
                )
            )
            runtime.outbox.wake()
        await runtime.settle()
        store = runtime.store
        sent_events = await store.scalar("SELECT COUNT(*) FROM events WHERE kind = 'reply.sent'")
        sent_rows = await store.scalar(
            "SELECT COUNT(*) FROM outbox WHERE state = ?", (DeliveryState.SENT,)
        )
        total_rows = await store.scalar("SELECT COUNT(*) FROM outbox")
    doubled = {row: n for row, n in sender.sent.items() if n > 1}
    assert doubled == {}
    assert sent_events == sent_rows == len(sender.sent) == total_rows
    assert total_rows >= MESSAGES
