"""Delivery through the outbox: retries, permanent failures, restarts."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from pathlib import Path

from agents.replies import Reply
from bot.outbox import BACKOFF, Delivery, DeliveryError, OutboxDispatcher
from memory.clock import ManualClock
from memory.events import EventLog
from memory.outbox import DeliveryState, OutboxRepo
from memory.store import Store


class FlakySender:
    """A platform that fails a given number of times before taking messages."""

    platform = "flaky"

    def __init__(self, failures: list[DeliveryError]) -> None:
        self.failures = failures
        self.delivered: list[str] = []

    async def send(self, delivery: Delivery) -> str | None:
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(delivery.reply.text)
        return f"msg-{delivery.row.id}"


async def _enqueue(store: Store, text: str) -> int:
    async with store.write() as tx:
        return await OutboxRepo(store).enqueue(
            tx,
            platform="flaky",
            chat_id="c",
            thread_id=None,
            reply_to=None,
            body=Reply(text=text).to_json(),
            now=datetime.now(UTC),
        )


async def test_transient_failures_are_retried_after_the_platform_wait(store: Store) -> None:
    events = EventLog(store)
    sender = FlakySender(
        [DeliveryError("429", retry_after=0.05), DeliveryError("timeout", retry_after=0)]
    )
    clock = ManualClock(datetime.now(UTC))
    dispatcher = OutboxDispatcher(store, events, {"flaky": sender}, clock=clock)
    await _enqueue(store, "hello")
    await dispatcher.start()
    try:
        # Each round delivers what is due, then time moves past any wait: no wall clock.
        for _ in range(10):
            await dispatcher.drain()
            if sender.delivered:
                break
            clock.advance(60)
    finally:
        await dispatcher.stop()
    assert sender.delivered == ["hello"]
    assert [e.kind for e in await events.query(kind="reply")] == [
        "reply.retry",
        "reply.retry",
        "reply.sent",
    ]
    assert (await events.query(kind="reply.retry"))[0].payload["wait_s"] == 0.05


async def test_a_permanent_refusal_is_not_retried_and_is_visible(store: Store) -> None:
    events = EventLog(store)
    sender = FlakySender([DeliveryError("400 chat not found", permanent=True)])
    dispatcher = OutboxDispatcher(store, events, {"flaky": sender})
    await _enqueue(store, "lost cause")
    await _enqueue(store, "next one")
    await dispatcher.start()
    await dispatcher.drain()
    await dispatcher.stop()
    counts = await OutboxRepo(store).counts()
    assert counts[DeliveryState.FAILED] == 1
    assert counts[DeliveryState.SENT] == 1
    assert sender.delivered == ["next one"]  # one bad reply does not block the rest
    [failed] = await events.query(kind="reply.failed")
    assert failed.payload["error"] == "400 chat not found"


async def test_pending_replies_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Store.open(path) as store:
        await _enqueue(store, "written before the crash")
    async with Store.open(path) as store:
        sender = FlakySender([])
        dispatcher = OutboxDispatcher(store, EventLog(store), {"flaky": sender})
        await dispatcher.start()
        await dispatcher.drain()
        await dispatcher.stop()
    assert sender.delivered == ["written before the crash"]


def test_retry_delay_backs_off_with_jitter_and_obeys_the_platform() -> None:
    rng = random.Random(7)
    delays = [BACKOFF.delay(n, rng=rng) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0
    ceilings = [BACKOFF.ceiling(n) for n in range(1, 12)]
    assert all(b == a * 2 for a, b in itertools.pairwise(ceilings[:8]))
    assert all(c / 2 <= d <= c for c, d in zip(ceilings, delays, strict=True))
    assert max(delays) <= 300
    assert BACKOFF.delay(3, retry_after=7.5) == 7.5  # a longer word of the platform wins
