"""Retention clears old delivered reply bodies and inbound texts, and nothing else."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from memory.clock import ManualClock
from memory.events import EventLog
from memory.inbound import InboundRepo
from memory.outbox import SHARED_BODY_CHARS, DeliveryState, OutboxRepo
from memory.retention import Pruned, Retention
from memory.store import Store
from memory.tasks import PRUNED, TaskRepo, TaskState

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
LONG = "a long reply " * (SHARED_BODY_CHARS // 10)


async def _reply(store: Store, clock: ManualClock, body: str, end: DeliveryState) -> int:
    """One reply queued now and taken to ``end`` (sent/failed/sending/pending)."""
    outbox = OutboxRepo(store)
    async with store.write() as tx:
        outbox_id = await outbox.enqueue(
            tx,
            platform="console",
            chat_id="local",
            thread_id=None,
            reply_to=None,
            body=body,
            now=clock.now(),
        )
    if end is DeliveryState.PENDING:
        return outbox_id
    async with store.write() as tx:
        assert await outbox.claim(tx, outbox_id, clock.now()) is not None
        if end is DeliveryState.SENT:
            assert await outbox.mark_sent(tx, outbox_id, clock.now(), "ref")
        elif end is DeliveryState.FAILED:
            await outbox.mark_failed(tx, outbox_id, "refused")
    return outbox_id


async def _message(store: Store, clock: ManualClock, events: EventLog, message_id: str) -> None:
    async with store.write() as tx:
        seq = await events.append(tx, "message.received", actor="console:op")
        assert await InboundRepo(store).record(
            tx,
            platform="console",
            message_id=message_id,
            chat_id="local",
            thread_id=None,
            user_id="op",
            text=f"text of {message_id}",
            received_at=clock.now(),
            event_seq=seq,
        )


async def _bodies(store: Store) -> dict[int, tuple[str, str, int | None]]:
    outbox = OutboxRepo(store)
    rows = await store.fetchall("SELECT id, body_id FROM outbox ORDER BY id")
    found = {}
    for row in rows:
        got = await outbox.get(int(row["id"]))
        assert got is not None
        found[got.id] = (got.state.value, got.body, row["body_id"])
    return found


async def test_clears_only_old_delivered_bodies_and_old_texts(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        old_sent = await _reply(store, clock, "short and sent", DeliveryState.SENT)
        old_long = await _reply(store, clock, LONG, DeliveryState.SENT)
        old_pending = await _reply(store, clock, "still pending", DeliveryState.PENDING)
        old_failed = await _reply(store, clock, "refused for good", DeliveryState.FAILED)
        old_sending = await _reply(store, clock, "in flight", DeliveryState.SENDING)
        await _message(store, clock, events, "old")
        clock.advance(days=10)
        young_long = await _reply(store, clock, LONG, DeliveryState.SENT)  # shares old_long's body
        young_sent = await _reply(store, clock, "young", DeliveryState.SENT)
        await _message(store, clock, events, "young")
        events_before = await events.query()

        pruned = await Retention(store, events, clock, days=5).run_once()

        assert pruned == Pruned(bodies=2, texts=1)
        bodies = await _bodies(store)
        assert bodies[old_sent] == ("sent", "", None)
        assert bodies[old_long] == ("sent", "", None)
        assert bodies[old_pending][:2] == ("pending", "still pending")
        assert bodies[old_failed][:2] == ("failed", "refused for good")
        assert bodies[old_sending][:2] == ("sending", "in flight")
        assert bodies[young_sent][:2] == ("sent", "young")
        # The shared body stays while a young reply points at it.
        assert bodies[young_long][1] == LONG
        assert await store.scalar("SELECT COUNT(*) FROM reply_bodies") == 1
        inbound = InboundRepo(store)
        old, young = await inbound.get("console", "old"), await inbound.get("console", "young")
        assert old is not None and old.text == "" and old.user_id == "op"
        assert young is not None and young.text == "text of young"
        # The event log: every earlier event unchanged, one more saying what was cleared.
        events_after = await events.query()
        assert events_after[: len(events_before)] == events_before
        assert [e.kind for e in events_after[len(events_before) :]] == ["retention.pruned"]
        assert events_after[-1].payload["reply_bodies"] == 2
        assert (await events.verify()).ok

        # Later the young reply ages out too, and its shared body goes with it.
        clock.advance(days=10)
        assert await Retention(store, events, clock, days=5).run_once() == Pruned(2, 1)
        assert (await _bodies(store))[young_long] == ("sent", "", None)
        assert (await _bodies(store))[young_sent] == ("sent", "", None)
        assert await store.scalar("SELECT COUNT(*) FROM reply_bodies") == 0
        assert (await events.verify()).ok


async def test_a_second_run_picks_up_rows_that_became_final(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        waiting = await _reply(store, clock, "pending for a while", DeliveryState.PENDING)
        later = await _reply(store, clock, "sent", DeliveryState.SENT)
        clock.advance(days=3)
        retention = Retention(store, events, clock, days=1)
        assert await retention.run_once() == Pruned(bodies=1)
        outbox = OutboxRepo(store)
        async with store.write() as tx:
            assert await outbox.claim(tx, waiting, clock.now()) is not None
            assert await outbox.mark_sent(tx, waiting, clock.now())
        clock.advance(days=3)
        assert await retention.run_once() == Pruned(bodies=1)
        assert (await _bodies(store))[waiting][1] == ""
        assert (await _bodies(store))[later][1] == ""


async def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        sent = await _reply(store, clock, LONG, DeliveryState.SENT)
        await _message(store, clock, events, "m")
        clock.advance(days=4000)
        retention = Retention(store, events, clock, days=0)
        retention.start()  # a no-op: nothing to run
        assert await retention.run_once() == Pruned()
        await retention.stop()
        assert (await _bodies(store))[sent][1] == LONG
        message = await InboundRepo(store).get("console", "m")
        assert message is not None and message.text == "text of m"


async def test_many_rows_in_batches(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        ids = [await _reply(store, clock, f"reply {i}", DeliveryState.SENT) for i in range(25)]
        for i in range(25):
            await _message(store, clock, events, f"m{i}")
        clock.advance(days=2)
        outbox, inbound = OutboxRepo(store), InboundRepo(store)
        cleared, watermark = await outbox.prune_delivered(clock.now() - timedelta(days=1), batch=4)
        assert (cleared, watermark) == (25, ids[-1])
        texts, _ = await inbound.prune_texts(clock.now() - timedelta(days=1), batch=4)
        assert texts == 25
        assert await store.scalar("SELECT COUNT(*) FROM inbound WHERE text != ''") == 0
        assert await store.scalar("SELECT COUNT(*) FROM outbox WHERE body != ''") == 0


async def _task(store: Store, clock: ManualClock, key: str, end: TaskState) -> int:
    """A task created now and taken to ``end`` now (queued if ``end`` is QUEUED)."""
    tasks = TaskRepo(store)
    async with store.write() as tx:
        row, created = await tasks.create(
            tx,
            idempotency_key=key,
            kind="help",
            agent="ops",
            lane="console:local",
            intent=f'{{"kind":"help","key":"{key}"}}',
            now=clock.now(),
        )
        assert created
        if end is not TaskState.QUEUED:
            assert await tasks.update(
                tx, row.id, state=end, now=clock.now(), checkpoint=f'{{"of":"{key}"}}'
            )
    return row.id


async def _intents(store: Store) -> dict[int, tuple[str, str, str | None]]:
    tasks = TaskRepo(store)
    found = {}
    for (task_id,) in await store.fetchall("SELECT id FROM tasks ORDER BY id"):
        row = await tasks.get(int(task_id))
        assert row is not None
        found[row.id] = (row.state.value, row.intent, row.checkpoint)
    return found


async def test_clears_the_bodies_of_old_tasks_that_ended_well_only(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        ids = {s: await _task(store, clock, f"old-{s.value}", s) for s in TaskState}
        async with store.write() as tx:  # a reply that points at a task to be cleared
            await tx.execute(
                "INSERT INTO outbox (platform, chat_id, body, next_attempt_at, task_id,"
                " created_at) VALUES ('console', 'local', 'hi', 't', ?, 't')",
                (ids[TaskState.SUCCEEDED],),
            )
        clock.advance(days=10)
        young = await _task(store, clock, "young", TaskState.SUCCEEDED)
        before = await _intents(store)
        rows_before = [dict(r) for r in await store.fetchall("SELECT * FROM tasks ORDER BY id")]
        counts_before = await TaskRepo(store).counts()
        events_before = await events.query()

        pruned = await Retention(store, events, clock, days=5).run_once()

        assert pruned == Pruned(tasks=2)
        # Rows written again: the same ids and every other column, counts unchanged,
        # and the reply still points at its task.
        rows_after = [dict(r) for r in await store.fetchall("SELECT * FROM tasks ORDER BY id")]
        assert [{**r, "intent": "", "checkpoint": None} for r in rows_after] == [
            {**r, "intent": "", "checkpoint": None} for r in rows_before
        ]
        assert await TaskRepo(store).counts() == counts_before
        assert await store.fetchall("PRAGMA foreign_key_check") == []
        assert await store.scalar("PRAGMA defer_foreign_keys") == 0
        after = await _intents(store)
        for state in (TaskState.SUCCEEDED, TaskState.CANCELLED):
            assert after[ids[state]] == (state.value, PRUNED, None)
        for state in set(TaskState) - {TaskState.SUCCEEDED, TaskState.CANCELLED}:
            assert after[ids[state]] == before[ids[state]], state  # kept, intent and all
        assert after[young] == before[young]
        events_after = await events.query()
        assert events_after[: len(events_before)] == events_before
        [record] = events_after[len(events_before) :]
        assert record.kind == "retention.pruned"
        assert record.payload["task_bodies"] == 2
        assert (await events.verify()).ok
        # Nothing more to clear: a second run records nothing.
        assert await Retention(store, events, clock, days=5).run_once() == Pruned()


async def test_a_task_that_ends_well_later_is_cleared_by_a_later_run(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        events = EventLog(store, clock=clock)
        held = await _task(store, clock, "held", TaskState.WAITING_APPROVAL)
        done = await _task(store, clock, "done", TaskState.SUCCEEDED)
        clock.advance(days=3)
        retention = Retention(store, events, clock, days=1)
        assert await retention.run_once() == Pruned(tasks=1)
        assert (await _intents(store))[held][1] != PRUNED
        async with store.write() as tx:
            assert await TaskRepo(store).update(
                tx, held, state=TaskState.CANCELLED, now=clock.now()
            )
        # Ended one day ago is not old enough yet; three days later it is.
        clock.advance(days=0.5)
        assert await retention.run_once() == Pruned()
        clock.advance(days=3)
        assert await retention.run_once() == Pruned(tasks=1)
        assert (await _intents(store))[held] == ("cancelled", PRUNED, None)
        assert (await _intents(store))[done][1] == PRUNED


async def test_many_tasks_in_batches_and_the_settled_mark(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    async with Store.open(tmp_path / "r.db") as store:
        done = [await _task(store, clock, f"d{i}", TaskState.SUCCEEDED) for i in range(9)]
        failed = await _task(store, clock, "f", TaskState.FAILED)
        dead = await _task(store, clock, "x", TaskState.DEAD)
        after_dead = await _task(store, clock, "d9", TaskState.SUCCEEDED)
        clock.advance(days=2)
        tasks = TaskRepo(store)
        cleared, settled = await tasks.prune_finished(clock.now() - timedelta(days=1), batch=4)
        # Everything up to the failed task is settled; the dead one may still be retried.
        assert (cleared, settled) == (10, failed)
        assert dead > failed and after_dead > dead
        intents = await _intents(store)
        assert all(intents[i][1] == PRUNED for i in [*done, after_dead])
        assert await tasks.prune_finished(clock.now(), after_id=settled) == (0, failed)


async def test_clearing_task_bodies_frees_pages_not_just_bytes(tmp_path: Path) -> None:
    """Shrunk rows left in place keep their pages (a page a third full is not merged);
    the rows are written again so the pages they no longer need go to the free list."""
    clock = ManualClock(T0)

    def pages_in_use() -> int:
        conn = sqlite3.connect(tmp_path / "r.db")
        try:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            return int(pages - conn.execute("PRAGMA freelist_count").fetchone()[0])
        finally:
            conn.close()

    async with Store.open(tmp_path / "r.db") as store:
        for i in range(300):
            await _task(store, clock, f"k{i:03d}-" + "x" * 200, TaskState.SUCCEEDED)
        clock.advance(days=2)
        used = pages_in_use()
        assert await Retention(store, EventLog(store, clock=clock), clock, days=1).run_once() == (
            Pruned(tasks=300)
        )
        assert pages_in_use() < used * 0.8
