"""The jobs repository on a real SQLite file: upsert never duplicates, a run instant is
recorded once, and every write carries its event in the same transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memory.events import EventLog
from memory.jobs import Job, JobRepo, JobState, RunStatus
from memory.store import Store

T0 = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)


def job(**changes: object) -> Job:
    base = Job(
        id="digest.daily",
        owner="digest",
        intent_kind="digest",
        payload={"conversation": {"platform": "console", "chat_id": "local"}},
        schedule="every day at 8:00",
        compiled="cron 0 8 * * *",
        timezone="Europe/Berlin",
        misfire="once",
        state=JobState.ACTIVE,
        next_run_at=T0 + timedelta(hours=1),
        last_run_at=None,
        created_at=T0,
        updated_at=T0,
    )
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    fields.update(changes)
    return Job(**fields)  # type: ignore[arg-type]


@pytest.fixture
def repo(store: Store, events: EventLog) -> JobRepo:
    return JobRepo(store, events)


async def kinds(events: EventLog) -> list[str]:
    return [e.kind for e in await events.query(kind="job")]


async def test_upsert_replaces_never_duplicates(
    store: Store, repo: JobRepo, events: EventLog
) -> None:
    async with store.write() as tx:
        assert await repo.upsert(tx, job(), actor="digest")
    later = T0 + timedelta(days=1)
    async with store.write() as tx:
        new = await repo.upsert(
            tx,
            job(
                schedule="daily at 9:00",
                compiled="cron 0 9 * * *",
                created_at=later,
                updated_at=later,
            ),
            actor="digest",
        )
    assert new is False
    assert await store.scalar("SELECT COUNT(*) FROM jobs") == 1
    stored = await repo.get("digest.daily")
    assert stored is not None
    assert stored.compiled == "cron 0 9 * * *"
    assert stored.created_at == T0  # the first creation is kept
    assert stored.updated_at == later
    assert stored.payload["conversation"]["chat_id"] == "local"
    scheduled = await events.query(kind="job.scheduled")
    assert [e.payload["new"] for e in scheduled] == [True, False]
    assert scheduled[0].subject == "job:digest.daily"


async def test_a_failed_transaction_leaves_neither_row_nor_event(
    store: Store, repo: JobRepo, events: EventLog
) -> None:
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await repo.upsert(tx, job(), actor="digest")
            raise RuntimeError("crash before commit")
    assert await repo.get("digest.daily") is None
    assert await kinds(events) == []


async def test_record_run_once_per_instant(store: Store, repo: JobRepo, events: EventLog) -> None:
    async with store.write() as tx:
        await repo.upsert(tx, job(), actor="digest")
    at = T0 + timedelta(hours=1)
    for attempt in range(2):
        async with store.write() as tx:
            new = await repo.record_run(
                tx,
                "digest.daily",
                at,
                idempotency_key="job:digest.daily@x",
                late=True,
                missed_since=at,
                coalesced=0,
                now=at + timedelta(hours=2),
            )
        assert new is (attempt == 0)
    assert await store.scalar("SELECT COUNT(*) FROM job_runs") == 1
    assert await kinds(events) == ["job.scheduled", "job.ran", "job.late"]
    late = (await events.query(kind="job.late"))[0]
    assert late.payload["missed_since"] == "2026-06-01T06:00:00.000000Z"
    (pending,) = await repo.pending_runs()
    assert pending.status is RunStatus.PENDING and pending.late
    async with store.write() as tx:
        assert await repo.mark_submitted(tx, "digest.daily", at, now=at)
    async with store.write() as tx:
        assert not await repo.mark_submitted(tx, "digest.daily", at, now=at)
    assert await repo.pending_runs() == []
    assert (await repo.count_runs("digest.daily"))[RunStatus.SUBMITTED] == 1
    last = await repo.last_run("digest.daily")
    assert last is not None and last.submitted_at == at


async def test_skips_are_rows_and_one_event(store: Store, repo: JobRepo, events: EventLog) -> None:
    async with store.write() as tx:
        await repo.upsert(tx, job(), actor="digest")
    instants = [T0 + timedelta(days=d) for d in range(3)]
    async with store.write() as tx:
        written = await repo.record_skips(
            tx,
            "digest.daily",
            [(t, "older than 2h") for t in instants],
            truncated=False,
            now=T0 + timedelta(days=3),
        )
    assert written == 3
    (skipped,) = await events.query(kind="job.skipped")
    assert skipped.payload["count"] == 3
    assert skipped.payload["reasons"] == ["older than 2h"]
    assert await repo.skipped_since("digest.daily", T0 + timedelta(days=1)) == 2
    assert (await repo.count_runs())[RunStatus.SKIPPED] == 3


async def test_due_state_changes_and_advance(store: Store, repo: JobRepo, events: EventLog) -> None:
    async with store.write() as tx:
        await repo.upsert(tx, job(), actor="digest")
        await repo.upsert(tx, job(id="later", next_run_at=T0 + timedelta(days=1)), actor="digest")
    now = T0 + timedelta(hours=2)
    assert [j.id for j in await repo.due(now)] == ["digest.daily"]
    assert await repo.earliest_next() == T0 + timedelta(hours=1)
    async with store.write() as tx:
        await repo.set_state(
            tx, "digest.daily", JobState.PAUSED, next_run_at=None, now=now, actor="op"
        )
    assert await repo.due(now) == []
    async with store.write() as tx:
        await repo.set_state(
            tx,
            "digest.daily",
            JobState.ACTIVE,
            next_run_at=T0 + timedelta(days=1, hours=1),
            now=now,
            actor="op",
        )
        await repo.set_state(tx, "later", JobState.CANCELLED, next_run_at=None, now=now, actor="op")
    assert [j.id for j in await repo.list(owner="digest")] == ["digest.daily", "later"]
    async with store.write() as tx:
        await repo.advance(tx, "digest.daily", last_run_at=now, next_run_at=None, now=now)
    done = await repo.get("digest.daily")
    assert done is not None and done.state is JobState.DONE and done.last_run_at == now
    assert await kinds(events) == [
        "job.scheduled",
        "job.scheduled",
        "job.paused",
        "job.resumed",
        "job.cancelled",
        "job.done",
    ]
    assert (await events.verify()).ok


async def test_run_rows_need_their_job(store: Store, repo: JobRepo) -> None:
    with pytest.raises(Exception, match="FOREIGN KEY"):
        async with store.write() as tx:
            await repo.record_run(
                tx,
                "nope",
                T0,
                idempotency_key="k",
                late=False,
                missed_since=None,
                coalesced=0,
                now=T0,
            )
