"""The event log through its public API: ``record``, ``append``, ``append_many``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from memory.events import Draft, EventLog
from memory.store import Store

PAYLOAD = {"chars": 5, "platform": "console"}


async def record_per_s(path: Path, n: int, writers: int = 1) -> float:
    """Events/s of ``EventLog.record`` (each its own durable commit), ``writers``
    asyncio tasks sharing ``n`` events."""
    path.unlink(missing_ok=True)  # noqa: ASYNC240  # a bench, between measurements
    async with Store.open(path) as store:
        log = EventLog(store)
        for _ in range(20):
            await log.record("bench.warm", actor="bench", payload=PAYLOAD)
        per = n // writers

        async def writer(i: int) -> None:
            for _ in range(per):
                await log.record("message.received", actor=f"console:w{i}", payload=PAYLOAD)

        began = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        return per * writers / (time.perf_counter() - began)


async def append_many_per_s(path: Path, n: int) -> float:
    """Events/s of ``append_many`` of ``n`` events in one transaction."""
    path.unlink(missing_ok=True)  # noqa: ASYNC240  # a bench, between measurements
    drafts = [Draft("message.received", "console:op", "", PAYLOAD)] * n
    async with Store.open(path) as store:
        log = EventLog(store)
        await log.record("bench.warm", actor="bench")
        began = time.perf_counter()
        async with store.write() as tx:
            await log.append_many(tx, drafts)
        return n / (time.perf_counter() - began)
