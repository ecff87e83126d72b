"""In-process benchmarks through the public runtime: ``open_runtime`` and the gateway.

Every message goes in at ``runtime.gateway.handle(Inbound)`` and counts as done when
the console sender (writing into a buffer) has been handed its reply: gateway entry
to reply delivered, with everything soloops does in between (inbound log, events,
task, coordinator, outbox). Setup lives in :func:`running`, so adapting to a changed
runtime means changing one function.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import percentile
from bot.console import ConsoleSender
from bot.inbound import Inbound
from bot.outbox import Delivery
from bot.runtime import Runtime, open_runtime
from config import Settings
from memory.clock import ManualClock
from memory.embedder import Embedder
from memory.retention import Retention


class HashEmbedder:
    """A model-free embedder for ``--quick``: a vector from a text's hash, ready at once."""

    model_id = "bench-hash"
    dim = 384
    is_ready = True

    def start(self) -> None:
        return None

    async def ready(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = np.random.default_rng(abs(hash(text))).standard_normal(self.dim)
            out[i] /= np.linalg.norm(out[i])
        return out


class Recorder:
    """The console sender into a buffer, counting deliveries so a caller can wait."""

    platform = "console"

    def __init__(self) -> None:
        self.out = io.StringIO()
        self._console = ConsoleSender(self.out)
        self.count = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def send(self, delivery: Delivery) -> str | None:
        ref = await self._console.send(delivery)
        self.count += 1
        still = []
        for wanted, future in self._waiters:
            if self.count >= wanted and not future.done():
                future.set_result(None)
            elif not future.done():
                still.append((wanted, future))
        self._waiters = still
        return ref

    async def wait_for(self, count: int) -> None:
        """Until ``count`` replies have been delivered in all (two minutes at most)."""
        if self.count >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        await asyncio.wait_for(future, 120.0)


@dataclass
class Bench:
    """One running soloops with its recorder."""

    runtime: Runtime
    recorder: Recorder

    def inbound(self, text: str, chat: str = "local") -> Inbound:
        return Inbound(
            platform="console",
            message_id=uuid.uuid4().hex,
            chat_id=chat,
            user_id="op",
            text=text,
            received_at=datetime.now(UTC),
        )

    async def one(self, text: str, chat: str = "local") -> float:
        """Seconds from gateway entry to the first reply delivered; then settle (untimed)."""
        before = self.recorder.count
        began = time.perf_counter()
        await self.runtime.gateway.handle(self.inbound(text, chat))
        await self.recorder.wait_for(before + 1)
        elapsed = time.perf_counter() - began
        await self.runtime.settle()
        return elapsed

    async def say(self, text: str) -> str:
        """Send one line, settle, return what was printed for it."""
        start = len(self.recorder.out.getvalue())
        await self.runtime.gateway.handle(self.inbound(text))
        await self.runtime.settle()
        return self.recorder.out.getvalue()[start:]


@asynccontextmanager
async def running(home: Path, embedder: Embedder) -> AsyncIterator[Bench]:
    """A soloops built the way ``soloops chat`` builds it, replies into a buffer."""
    recorder = Recorder()
    settings = Settings(home=home)
    async with open_runtime(settings, [recorder], mode="chat", embedder=embedder) as runtime:
        yield Bench(runtime, recorder)


# --- messages -------------------------------------------------------------------------


async def sequential(bench: Bench, text: str, n: int) -> tuple[list[float], float]:
    """``n`` messages one after the other: latencies, and messages/s including settling."""
    latencies = []
    began = time.perf_counter()
    for _ in range(n):
        latencies.append(await bench.one(text))
    return latencies, n / (time.perf_counter() - began)


async def burst(bench: Bench, text: str, n: int, conversations: int = 8) -> float:
    """``n`` messages over several conversations, submitted concurrently as a platform
    adapter would (each acknowledged once recorded); messages/s until all replies are out."""
    per = n // conversations
    before = bench.recorder.count

    async def conversation(chat: str) -> None:
        for _ in range(per):
            await bench.runtime.gateway.handle(bench.inbound(text, chat))

    began = time.perf_counter()
    await asyncio.gather(*(conversation(f"burst-{i}") for i in range(conversations)))
    await bench.recorder.wait_for(before + per * conversations)
    elapsed = time.perf_counter() - began
    await bench.runtime.settle()
    return per * conversations / elapsed


async def remember_vs_embed(bench: Bench, embedder: Embedder, n: int) -> tuple[float, float]:
    """p50 seconds of ``/remember`` (model loaded) and of one ``embed([text])``."""
    stamp = uuid.uuid4().hex[:6]
    remember = [await bench.one(f"/remember {stamp} note {i} about invoices") for i in range(n)]
    embeds = []
    for i in range(n):
        began = time.perf_counter()
        embedder.embed([f"{stamp} another note {i} about invoices"])
        embeds.append(time.perf_counter() - began)
    return percentile(remember, 0.5), percentile(embeds, 0.5)


# --- the durable approval step ----------------------------------------------------------

_CODE = re.compile(r"/approve ([A-Z0-9]{4,12})")


async def approval_steps(bench: Bench, n: int) -> list[float]:
    """CPU seconds (``time.process_time``) of each ``/confirm`` + ``/approve CODE`` step,
    until the outcome is delivered."""
    await bench.say("/confirm warm up")  # a first card may pay one-off costs
    samples = []
    for i in range(n + 1):
        began = time.process_time()
        card = await bench.say(f"/confirm ship newsletter {i}")
        found = _CODE.search(card)
        if found is None:
            raise RuntimeError(f"no approval code in the /confirm reply: {card!r}")
        outcome = await bench.say(f"/approve {found[1]}")
        spent = time.process_time() - began
        if "Confirmed" not in outcome:
            raise RuntimeError(f"/approve did not deliver the outcome: {outcome!r}")
        if i:  # the first one clears a leftover card from the warm-up
            samples.append(spent)
    return samples


# --- database growth --------------------------------------------------------------------


def checkpointed_size(path: Path) -> int:
    """Bytes of the database and its WAL after a full checkpoint."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def bytes_per_message(bench: Bench, warmup: int, chunk: int, chunks: int) -> list[float]:
    """Database growth per ``/help`` in steady state, one sample per chunk."""
    path = bench.runtime.settings.database_path
    for _ in range(warmup):
        await bench.one("/help")
    samples = []
    size = checkpointed_size(path)
    for _ in range(chunks):
        for _ in range(chunk):
            await bench.one("/help")
        grown = checkpointed_size(path)
        samples.append((grown - size) / chunk)
        size = grown
    return samples


def used_bytes(path: Path) -> int:
    """Bytes of the database's pages in use (after a full checkpoint): what retention
    frees goes to SQLite's free list and is reused by new rows before the file grows."""
    checkpointed_size(path)
    with closing(sqlite3.connect(path)) as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "freelist_count", "page_size")
        )
    return int((pages - free) * size)


async def bytes_per_message_retained(
    bench: Bench, warmup: int, chunk: int, chunks: int, days: int = 90
) -> list[float]:
    """What a ``/help`` leaves once the retention window has passed over it: pages in
    use per message after a retention run that sees every reply as ``days`` old (the
    rows and the events stay; the bodies and texts go)."""
    runtime = bench.runtime
    path = runtime.settings.database_path
    later = ManualClock(datetime.now(UTC) + timedelta(days=days + 1))
    retention = Retention(runtime.store, runtime.events, later, days)
    for _ in range(warmup):
        await bench.one("/help")
    await retention.run_once()
    samples = []
    used = used_bytes(path)
    for _ in range(chunks):
        for _ in range(chunk):
            await bench.one("/help")
        later.set(datetime.now(UTC) + timedelta(days=days + 1))
        await retention.run_once()
        now_used = used_bytes(path)
        samples.append((now_used - used) / chunk)
        used = now_used
    return samples


# --- /status at sizes of history --------------------------------------------------------


async def status_p50(bench: Bench, n: int) -> float:
    for _ in range(3):
        await bench.one("/status")
    return percentile([await bench.one("/status") for _ in range(n)], 0.5)


async def build_history(path: Path, n_events: int, embedder: Embedder) -> Path:
    """A database with ``n_events`` events of real message traffic (and the inbound,
    task and outbox rows that go with them), cached: built once, copied per use.

    A few real ``/help`` messages make the seed; the rows are then multiplied by SQL and
    the events appended with ``EventLog.append_many`` in big batches (a real hash chain).
    """
    if path.exists():  # noqa: ASYNC240  # a bench, before measuring
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    work = path.with_name(path.stem + ".building")
    shutil.rmtree(work, ignore_errors=True)
    async with running(work, embedder) as bench:
        for _ in range(20):
            await bench.one("/help")
        seed = await bench.runtime.events.query()
        store = bench.runtime.store
        messages = int(await store.scalar("SELECT COUNT(*) FROM inbound"))
        per_message = max(1, len(seed) // max(1, messages))
        target_rows = max(messages, n_events // per_message)
        from memory.events import Draft

        async with store.write() as tx:
            round_no = 0
            while int((await tx.fetchone("SELECT COUNT(*) FROM inbound"))[0]) < target_rows:  # type: ignore[index]
                round_no += 1
                for table in ("tasks", "inbound", "outbox"):
                    await _double(tx, table, round_no)
        drafts = [Draft(e.kind, e.actor, e.subject, e.payload) for e in seed]
        have = await bench.runtime.events.last_seq()
        batch = 50_000
        while have < n_events:
            size = min(batch, n_events - have)
            rows = [drafts[i % len(drafts)] for i in range(size)]
            async with store.write() as tx:
                await bench.runtime.events.append_many(tx, rows)
            have += size
    database = work / "soloops.db"
    checkpointed_size(database)
    database.replace(path)
    shutil.rmtree(work, ignore_errors=True)
    return path


async def _double(tx: Any, table: str, round_no: int) -> None:
    """Copy every row of ``table`` once more, making its unique columns unique again."""
    columns = [r["name"] for r in await tx.fetchall(f"PRAGMA table_info({table})") if not r["pk"]]
    suffixed: set[str] = set()
    for index in await tx.fetchall(f"PRAGMA index_list({table})"):
        if index["unique"] and index["origin"] != "pk":
            parts = await tx.fetchall(f"PRAGMA index_info({index['name']})")
            suffixed.add(parts[-1]["name"])
    select = ", ".join(f"{c} || '~{round_no}'" if c in suffixed else c for c in columns)
    names = ", ".join(columns)
    await tx.execute(f"INSERT INTO {table} ({names}) SELECT {select} FROM {table}")


def copy_history(source: Path, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, home / "soloops.db")
