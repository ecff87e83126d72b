"""``python -m bench [--quick] [--only GROUP ...]``: every benchmark, one table.

Prints the table and writes ``bench/results.json``. Groups: messages, process,
eventlog, approval, status, growth, memory. ``--quick`` runs each at a tiny size (the
smoke test uses it: structure, not numbers) and never installs anything or loads the
embedding model; rows that need what is missing say "skipped: ..." in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import eventlog, inprocess, peers, process, raw
from bench.harness import (
    RESULTS,
    Row,
    machine,
    percentile,
    ratio_at_least,
    ratio_at_most,
    skipped,
    table,
    value_at_least,
    value_at_most,
    write_results,
)
from memory.embedder import Embedder, SentenceTransformerEmbedder
from memory.migrations import SCHEMA_VERSION

CACHE = Path(__file__).with_name(".cache")
MS = 1000.0


@dataclass(frozen=True, slots=True)
class Sizes:
    rounds: int = 5
    help_n: int = 500
    raw_commits: int = 2000
    burst_n: int = 1000
    remember_n: int = 30
    process_n: int = 300
    process_rounds: int = 3
    log_n: int = 5000
    batch_n: int = 100_000
    approval_steps: int = 30
    approval_rounds: int = 3
    history: tuple[int, ...] = (0, 100_000, 1_000_000)
    status_n: int = 20
    growth_warmup: int = 200
    growth_chunk: int = 500
    growth_chunks: int = 3
    memory_n: int = 10_000
    memory_queries: int = 300


FULL = Sizes()
QUICK = Sizes(
    rounds=2,
    help_n=15,
    raw_commits=100,
    burst_n=40,
    remember_n=3,
    process_n=8,
    process_rounds=1,
    log_n=100,
    batch_n=1000,
    approval_steps=2,
    approval_rounds=1,
    history=(0, 600, 3000),
    status_n=3,
    growth_warmup=5,
    growth_chunk=10,
    growth_chunks=2,
    memory_n=1000,
    memory_queries=30,
)


@dataclass
class Context:
    sizes: Sizes
    quick: bool
    scratch: Path
    embedder: Embedder
    model_loaded: bool
    sequential_per_s: list[float]


# --- 1. messages in process -------------------------------------------------------------


async def messages(ctx: Context) -> list[Row]:
    s = ctx.sizes
    p50, p90, rate, burst_rate, commit, commit_full = [], [], [], [], [], []
    remember, embed = [], []
    async with inprocess.running(ctx.scratch / "messages", ctx.embedder) as bench:
        for _ in range(20):
            await bench.one("/help")
        for r in range(s.rounds):
            commit.append(
                percentile(raw.commit_latencies(ctx.scratch / "raw.db", s.raw_commits), 0.5)
            )
            commit_full.append(
                percentile(
                    raw.commit_latencies(ctx.scratch / "raw.db", s.raw_commits // 4, "FULL"), 0.5
                )
            )
            latencies, per_s = await inprocess.sequential(bench, "/help", s.help_n)
            p50.append(percentile(latencies, 0.5))
            p90.append(percentile(latencies, 0.9))
            rate.append(per_s)
            burst_rate.append(await inprocess.burst(bench, "/help", s.burst_n))
            if ctx.model_loaded and r < 3:
                got = await inprocess.remember_vs_embed(bench, ctx.embedder, s.remember_n)
                remember.append(got[0])
                embed.append(got[1])
    ctx.sequential_per_s = rate
    ms = [x * MS for x in p50]
    rows = [
        Row(
            "messages",
            "/help p50, gateway to reply delivered",
            "ms",
            ms,
            "one raw commit p50 (WAL, NORMAL)",
            "ms",
            [x * MS for x in commit],
            ratio_at_most(10),
        ),
        Row(
            "messages",
            "/help p50 vs a FULL commit",
            "ms",
            ms,
            "one raw commit p50 (WAL, FULL)",
            "ms",
            [x * MS for x in commit_full],
        ),
        Row("messages", "/help p50", "ms", ms, target=value_at_most(1, "ms")),
        Row("messages", "/help p90", "ms", [x * MS for x in p90]),
        Row(
            "messages",
            "/help sequential, one conversation",
            "msg/s",
            rate,
            target=value_at_least(2000, "msg/s"),
        ),
        Row(
            "messages",
            f"burst: {s.burst_n} /help over 8 conversations at once",
            "msg/s",
            burst_rate,
            "sequential",
            "msg/s",
            rate,
            ratio_at_least(1.0, "ratio > 1 (grows)"),
        ),
    ]
    if remember:
        rows.append(
            Row(
                "messages",
                "/remember p50 (model loaded)",
                "ms",
                [x * MS for x in remember],
                "one embed([text]) p50",
                "ms",
                [x * MS for x in embed],
                ratio_at_most(1.3),
            )
        )
    else:
        rows.append(
            skipped(
                "messages",
                "/remember p50 (model loaded)",
                "ms",
                "--quick does not load the model",
                ratio_at_most(1.3),
            )
        )
    return rows


# --- 2. whole process -------------------------------------------------------------------


async def whole_process(ctx: Context) -> list[Row]:
    s = ctx.sizes
    rates, first, rss = [], [], []
    for _ in range(s.process_rounds):
        fresh, per_s = await asyncio.to_thread(process.throughput, s.process_n)
        rates.append(per_s)
        first.append(fresh.first_reply_s)
        rss.append(fresh.peak_rss_mb)
    rows = [
        Row(
            "process",
            f"printf '/help\\n' x {s.process_n} | soloops chat",
            "msg/s",
            rates,
            "in process, sequential",
            "msg/s",
            ctx.sequential_per_s,
        ),
        Row(
            "process",
            "start-up: first reply to a scripted /help",
            "s",
            first,
            target=value_at_most(0.3, "s"),
        ),
        Row("process", "peak RSS, scripted /help", "MB", rss, target=value_at_most(150, "MB")),
    ]
    if ctx.quick:
        rows.append(
            skipped(
                "process",
                "peak RSS, scripted /recall (model loaded)",
                "MB",
                "--quick does not load the model",
                value_at_most(450, "MB"),
            )
        )
    else:
        # /recall searches by meaning, so the model loads (a /remember stores at once and
        # leaves the vector to the index preparation, which a chat never starts).
        run = await asyncio.to_thread(process.chat, b"/recall what did the bench note\n")
        rows.append(
            Row(
                "process",
                "peak RSS, scripted /recall (model loaded)",
                "MB",
                [run.peak_rss_mb],
                target=value_at_most(450, "MB"),
                note=f"first reply after {run.first_reply_s:.2f} s",
            )
        )
    return rows


# --- 3. event log -----------------------------------------------------------------------


async def event_log(ctx: Context) -> list[Row]:
    s = ctx.sizes
    one, eight, raw_rate, many, raw_many = [], [], [], [], []
    db = ctx.scratch / "events.db"
    for _ in range(s.rounds):
        raw_rate.append(raw.commits_per_s(ctx.scratch / "raw.db", s.log_n))
        one.append(await eventlog.record_per_s(db, s.log_n))
        eight.append(await eventlog.record_per_s(db, s.log_n, writers=8))
        raw_many.append(raw.executemany_per_s(ctx.scratch / "raw.db", s.batch_n))
        many.append(await eventlog.append_many_per_s(db, s.batch_n))
    return [
        Row(
            "eventlog",
            "EventLog.record, one commit each",
            "events/s",
            one,
            "raw sqlite3, one commit per row",
            "rows/s",
            raw_rate,
            ratio_at_least(0.5),
        ),
        Row(
            "eventlog",
            "EventLog.record, 8 concurrent writers",
            "events/s",
            eight,
            "one writer",
            "events/s",
            one,
            ratio_at_least(1.0, "ratio > 1"),
        ),
        Row(
            "eventlog",
            f"append_many, {s.batch_n:,} in one transaction",
            "events/s",
            many,
            "raw executemany, one transaction",
            "rows/s",
            raw_many,
        ),
    ]


# --- 4. durable approval step -----------------------------------------------------------


async def approval(ctx: Context) -> list[Row]:
    s = ctx.sizes
    name, unit = "/confirm + /approve CODE until the outcome is delivered, CPU", "ms"
    target = ratio_at_most(1.0)
    why = peers.available() if ctx.quick else peers.ensure()
    ours, theirs, versions = [], [], {}
    async with inprocess.running(ctx.scratch / "approval", ctx.embedder) as bench:
        for r in range(s.approval_rounds):
            ours.append(percentile(await inprocess.approval_steps(bench, s.approval_steps), 0.5))
            if not why:
                db = ctx.scratch / f"langgraph-{r}.db"
                samples, versions = await asyncio.to_thread(
                    peers.langgraph_steps, db, s.approval_steps
                )
                theirs.append(percentile(samples, 0.5))
    ref = "LangGraph interrupt + resume, AsyncSqliteSaver"
    used = ", ".join(f"{k} {v}" for k, v in versions.items())
    return [
        Row(
            "approval",
            name,
            unit,
            [x * MS for x in ours],
            ref,
            unit,
            [x * MS for x in theirs],
            target,
            note=f"LangGraph skipped: {why}" if why else used,
        )
    ]


# --- 5. /status at sizes of history -----------------------------------------------------


async def status(ctx: Context) -> list[Row]:
    s = ctx.sizes
    results: dict[int, list[float]] = {}
    for size in s.history:
        home = ctx.scratch / f"status-{size}"
        if size:
            began = time.perf_counter()
            cached = CACHE / f"history-{size}-v{SCHEMA_VERSION}.db"
            built = not cached.exists()
            source = await inprocess.build_history(cached, size, ctx.embedder)
            if built:
                print(f"  built {size:,} events in {time.perf_counter() - began:.1f} s", flush=True)
            inprocess.copy_history(source, home)
        async with inprocess.running(home, ctx.embedder) as bench:
            results[size] = [
                await inprocess.status_p50(bench, s.status_n) * MS for _ in range(s.rounds)
            ]
        shutil.rmtree(home, ignore_errors=True)
    empty = results[s.history[0]]
    rows = [Row("status", "/status p50, empty database", "ms", empty)]
    for size in s.history[1:]:
        rows.append(
            Row(
                "status",
                f"/status p50 at {size:,} events",
                "ms",
                results[size],
                "empty database",
                "ms",
                empty,
                ratio_at_most(1.2) if size == s.history[-1] else None,
            )
        )
    return rows


# --- 6. database growth -----------------------------------------------------------------


async def growth(ctx: Context) -> list[Row]:
    s = ctx.sizes
    async with inprocess.running(ctx.scratch / "growth", ctx.embedder) as bench:
        samples = await inprocess.bytes_per_message(
            bench, s.growth_warmup, s.growth_chunk, s.growth_chunks
        )
    async with inprocess.running(ctx.scratch / "retained", ctx.embedder) as bench:
        retained = await inprocess.bytes_per_message_retained(
            bench, s.growth_warmup, s.growth_chunk, s.growth_chunks
        )
    return [
        Row(
            "growth",
            "database bytes per /help, raw, before retention (checkpointed)",
            "B",
            samples,
        ),
        Row(
            "growth",
            "database bytes per /help, steady state: kept after the 90-day retention",
            "B",
            retained,
            target=value_at_most(1536, "B"),
        ),
    ]


# --- 7. memory --------------------------------------------------------------------------


async def memory(ctx: Context) -> list[Row]:
    from bench.memory import rows

    return await rows(ctx.sizes.memory_n, ctx.sizes.memory_queries, quick=ctx.quick)


GROUPS: dict[str, Callable[[Context], Awaitable[list[Row]]]] = {
    "messages": messages,
    "process": whole_process,
    "eventlog": event_log,
    "approval": approval,
    "status": status,
    "growth": growth,
    "memory": memory,
}


async def run(quick: bool, only: list[str], out: Path) -> list[Row]:
    sizes = QUICK if quick else FULL
    info = machine()
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']},"
        f" SQLite {info['sqlite']}, load {info['loadavg_at_start']}",
        flush=True,
    )
    embedder: Embedder
    if quick:
        embedder, loaded = inprocess.HashEmbedder(), False
    else:
        print("loading the embedding model ...", flush=True)
        real = SentenceTransformerEmbedder()
        await asyncio.to_thread(real.load)
        embedder, loaded = real, True
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="soloops-bench-") as scratch:
        ctx = Context(sizes, quick, Path(scratch), embedder, loaded, [])
        for name, group in GROUPS.items():
            if only and name not in only:
                continue
            print(f"{name} ...", flush=True)
            began = time.perf_counter()
            try:
                rows.extend(await group(ctx))
            except Exception as exc:
                traceback.print_exc()
                rows.append(skipped(name, "(the whole group)", "", f"failed: {exc!r}"[:300]))
            print(f"  {time.perf_counter() - began:.1f} s", flush=True)
    options: dict[str, Any] = {"quick": quick, "only": only, "sizes": asdict(sizes)}
    write_results(rows, info, options, out)
    print()
    print(table(rows))
    notes = [f"- {r.group}: {r.name}: {r.note}" for r in rows if r.note]
    if notes:
        print("\n" + "\n".join(notes))
    print(f"\nwritten: {out}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(GROUPS), metavar="GROUP")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results.json goes")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.quick, args.only, args.out))
    failed = [r for r in rows if r.skipped.startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
