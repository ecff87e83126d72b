"""The fast path keeps its guarantees (issue 11): the model loads only when needed,
the in-memory queues are rebuilt from SQLite, and the cached chain head never forks
the event log."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import Settings
from memory.errors import EmbedderUnavailable
from memory.events import EventLog
from memory.outbox import DeliveryState
from memory.store import Store
from memory.tasks import TaskState
from tests.harness.inbound import console_inbound


class CountingEmbedder:
    """No model; counts how often something asked for one."""

    model_id = "none"
    dim = 0
    is_ready = False

    def __init__(self) -> None:
        self.asked = 0

    def start(self) -> None:
        self.asked += 1

    async def ready(self) -> None:
        self.start()
        raise EmbedderUnavailable("no model in this test")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbedderUnavailable("no model in this test")


async def test_help_never_asks_for_the_model_and_recall_does(settings: Settings) -> None:
    embedder = CountingEmbedder()
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], mode="chat", embedder=embedder
    ) as runtime:
        await runtime.gateway.handle(console_inbound("/help"))
        await runtime.settle()
        assert "/help" in out.getvalue() and embedder.asked == 0
        await runtime.gateway.handle(console_inbound("/recall invoices"))
        await runtime.settle()
        assert embedder.asked >= 1


async def test_the_service_prefetches_the_model(settings: Settings) -> None:
    embedder = CountingEmbedder()
    async with open_runtime(settings, [ConsoleSender(io.StringIO())], embedder=embedder):
        assert embedder.asked >= 1


async def test_work_queued_while_stopped_runs_at_the_next_start(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], mode="chat", embedder=CountingEmbedder()
    ) as runtime:
        await runtime.coordinator.stop()
        await runtime.outbox.stop()
        await runtime.gateway.handle(console_inbound("/help"))
        counts = await runtime.coordinator._tasks.counts()  # the stored truth
        assert counts[TaskState.QUEUED] == 1
        assert out.getvalue() == ""
    async with open_runtime(
        settings, [ConsoleSender(out)], mode="chat", embedder=CountingEmbedder()
    ) as runtime:
        await runtime.settle()
        assert "/help" in out.getvalue()
        tasks = await runtime.coordinator._tasks.counts()  # the stored truth
        assert tasks[TaskState.QUEUED] == 0 and tasks[TaskState.SUCCEEDED] == 1
        outbox = await runtime.outbox._repo.counts()  # the stored truth
        assert outbox[DeliveryState.SENT] == 1 and outbox[DeliveryState.PENDING] == 0


async def test_a_foreign_append_does_not_fork_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    async with Store.open(path) as one, Store.open(path) as other:
        first, second = EventLog(one), EventLog(other)
        assert await first.record("a", actor="t") == 1  # caches the head in ``one``
        assert await second.record("b", actor="t") == 2  # ``one``'s cache is now stale
        assert await first.record("c", actor="t") == 3
        report = await first.verify()
        assert report.ok and report.checked == 3


async def test_a_rolled_back_append_leaves_the_head_alone(store: Store) -> None:
    log = EventLog(store)
    await log.record("a", actor="t")
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            assert await log.append(tx, "lost", actor="t") == 2
            raise RuntimeError("abort")
    assert await log.record("b", actor="t") == 2
    report = await log.verify()
    assert report.ok and report.checked == 2


async def _truth(store: Store, table: str) -> dict[str, int]:
    rows = await store.fetchall(f"SELECT state, COUNT(*) AS n FROM {table} GROUP BY state")
    return {row["state"]: int(row["n"]) for row in rows}


async def test_state_counters_agree_with_count_after_a_random_mix(tmp_path: Path) -> None:
    import random

    from memory.outbox import OutboxRepo
    from memory.tasks import TaskRepo

    rng = random.Random(11)
    path = tmp_path / "counts.db"
    now = datetime.now(UTC)
    async with Store.open(path) as store:
        tasks, outbox = TaskRepo(store), OutboxRepo(store)
        for i in range(200):
            async with store.write() as tx:
                await tasks.create(
                    tx, idempotency_key=f"k{rng.randrange(150)}", kind="help", agent="ops",
                    lane="c", intent="{}", now=now,
                )  # fmt: skip
                await outbox.enqueue(
                    tx, platform="console", chat_id="c", thread_id=None, reply_to=None,
                    body="{}", now=now,
                )  # fmt: skip
                task_id, outbox_id = rng.randrange(1, 150), rng.randrange(1, i + 2)
                await tasks.update(tx, task_id, state=rng.choice(list(TaskState)), now=now)
                step = rng.randrange(4)
                if step == 0:
                    await outbox.claim(tx, outbox_id, now)
                elif step == 1:
                    await outbox.mark_sent(tx, outbox_id, now)
                elif step == 2:
                    await outbox.mark_failed(tx, outbox_id, "no")
            if i % 50 == 0:  # a rolled-back transaction changes no counter
                with pytest.raises(RuntimeError):
                    async with store.write() as tx:
                        await tasks.update(tx, 1, state=TaskState.DEAD, now=now)
                        raise RuntimeError("abort")
        counted = {state.value: n for state, n in (await tasks.counts()).items() if n}
        assert counted == await _truth(store, "tasks")
    async with Store.open(path) as store:  # a restart reads the same, nothing rebuilt
        counted = {state.value: n for state, n in (await OutboxRepo(store).counts()).items() if n}
        assert counted == await _truth(store, "outbox")


async def test_per_message_queries_use_an_index(store: Store) -> None:
    # (The chain head, ``ORDER BY seq DESC LIMIT 1``, walks the rowid b-tree from its
    # end, which the plan calls a SCAN; it is read once per process now anyway.)
    queries = [
        ("SELECT * FROM tasks WHERE state = 'queued' AND (next_attempt_at IS NULL"
         " OR next_attempt_at <= 'x') ORDER BY id LIMIT 200"),
        "SELECT MIN(next_attempt_at) FROM tasks WHERE state = 'queued' AND next_attempt_at > 'x'",
        "SELECT * FROM tasks WHERE idempotency_key = 'k'",
        "SELECT 1 FROM inbound WHERE platform = 'console' AND message_id = 'm'",
        ("SELECT * FROM outbox WHERE state = 'pending' AND platform IN ('console')"
         " AND next_attempt_at <= 'x' ORDER BY id LIMIT 100"),
        ("SELECT * FROM outbox WHERE platform = 'console' AND chat_id = 'c' AND thread_id IS NULL"
         " ORDER BY id DESC LIMIT 1"),
        "SELECT state, n FROM state_counts WHERE tbl = 'tasks'",
    ]  # fmt: skip
    for sql in queries:
        plan = " ".join(
            str(row["detail"]) for row in await store.fetchall("EXPLAIN QUERY PLAN " + sql)
        )
        assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", "") or "USING" in plan, (sql, plan)
