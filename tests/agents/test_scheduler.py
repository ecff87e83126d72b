"""The scheduler on a real SQLite file: time moves on a manual clock, restarts are real
(the store is closed and opened again), and ``submit`` creates real task rows keyed
by the run's idempotency key, as the coordinator does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.scheduler import JobRun, JobSpec, Scheduler, Schedules, UnknownJob
from agents.schedules import ScheduleError, render_jobs, zone
from memory.clock import ManualClock
from memory.events import EventLog
from memory.jobs import JobState, RunStatus
from memory.store import Store
from memory.tasks import TaskRepo
from memory.waiting import wait_for_event

BERLIN = zone("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


DIGEST = JobSpec(
    id="digest.daily",
    owner="digest",
    intent_kind="digest",
    schedule="every day at 8:00",
    payload={"conversation": {"platform": "console", "chat_id": "local"}},
    timezone="Europe/Berlin",
)


@dataclass
class Sink:
    """The runtime's ``submit``: a task row per idempotency key, like the coordinator.

    ``fail`` makes the next N calls raise (before or after the task is written).
    """

    runs: list[JobRun] = field(default_factory=list)
    fail_before: int = 0
    fail_after: int = 0
    store: Store | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, run: JobRun) -> None:
        if self.fail_before:
            self.fail_before -= 1
            raise ConnectionError("coordinator unreachable")
        assert self.store is not None
        async with self.store.write() as tx:
            await TaskRepo(self.store).create(
                tx,
                idempotency_key=run.idempotency_key,
                kind=run.intent_kind,
                agent=run.owner,
                lane="ops",
                intent="{}",
                now=run.scheduled_at,
            )
        self.runs.append(run)
        self.arrived.set()
        if self.fail_after:
            self.fail_after -= 1
            raise ConnectionError("died after the task was written")


@dataclass
class Home:
    path: Path
    clock: ManualClock
    sink: Sink

    @asynccontextmanager
    async def open(self, *, start: bool = True, **kw: Any) -> AsyncIterator[Scheduler]:
        """One process lifetime: open the store, start the scheduler, stop, close."""
        async with Store.open(self.path) as store:
            self.sink.store = store
            scheduler = Scheduler(
                store,
                EventLog(store, clock=self.clock),
                self.clock,
                self.sink.submit,
                timezone="Europe/Berlin",
                arm_timer=kw.pop("arm_timer", False),
                **kw,
            )
            if start:
                await scheduler.start()
            try:
                yield scheduler
            finally:
                await scheduler.stop()

    async def scalar(self, sql: str) -> Any:
        async with Store.open(self.path) as store:
            return await store.scalar(sql)

    async def events(self, kind: str) -> list[Any]:
        async with Store.open(self.path) as store:
            return await EventLog(store).query(kind=kind)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "soloops.db", ManualClock(berlin(2026, 6, 1, 6)), Sink())


async def test_daily_digest_runs_at_0800_berlin(home: Home) -> None:
    async with home.open() as scheduler:
        job = await scheduler.add(DIGEST)
        assert job.next_run_at == berlin(2026, 6, 1, 8) == datetime(2026, 6, 1, 6, tzinfo=UTC)
        home.clock.set(berlin(2026, 6, 1, 7, 59))
        assert (await scheduler.run_due()).submitted == ()
        home.clock.set(berlin(2026, 6, 1, 8))
        report = await scheduler.run_due()
    (run,) = report.submitted
    assert run.scheduled_at == berlin(2026, 6, 1, 8) and not run.late
    assert run.idempotency_key == "job:digest.daily@2026-06-01T06:00:00+00:00"
    assert run.payload["conversation"]["chat_id"] == "local"
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1
    assert await home.events("job.late") == []


async def test_down_from_0700_to_1000_gives_exactly_one_late_run_at_start(home: Home) -> None:
    home.clock.set(berlin(2026, 6, 1, 6))
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
        home.clock.set(berlin(2026, 6, 1, 7))
        await scheduler.run_due()
    assert home.sink.runs == []
    home.clock.set(berlin(2026, 6, 1, 10))  # soloops was down 07:00-10:00
    async with home.open() as scheduler:
        (run,) = home.sink.runs  # start() caught up
        assert run.late and run.scheduled_at == berlin(2026, 6, 1, 8)
        assert run.missed_since == berlin(2026, 6, 1, 8)
        job = await scheduler.get("digest.daily")
        assert job is not None and job.next_run_at == berlin(2026, 6, 2, 8)
        assert (await scheduler.run_due()).submitted == ()
    (late,) = await home.events("job.late")
    assert late.payload["missed_since"] == "2026-06-01T06:00:00.000000Z"
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1
    assert await home.scalar("SELECT late FROM job_runs") == 1


@pytest.mark.parametrize(("policy", "expected"), [("once", 1), ("all", 3)])
async def test_down_three_days(home: Home, policy: str, expected: int) -> None:
    async with home.open() as scheduler:
        await scheduler.add(replace(DIGEST, misfire=policy))
    home.clock.set(berlin(2026, 6, 3, 9))  # missed the 1st, 2nd and 3rd at 08:00
    async with home.open():
        pass
    assert len(home.sink.runs) == expected
    assert all(run.late for run in home.sink.runs)
    assert home.sink.runs[-1].scheduled_at == berlin(2026, 6, 3, 8)
    assert home.sink.runs[0].missed_since == berlin(2026, 6, 1, 8)
    if policy == "once":
        assert home.sink.runs[0].coalesced == 2
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == expected
    assert len(await home.events("job.late")) == expected


async def test_skip_if_older_than_skips_and_says_so(home: Home) -> None:
    async with home.open() as scheduler:
        await scheduler.add(replace(DIGEST, misfire="skip-if-older-than 2h"))
    home.clock.set(berlin(2026, 6, 1, 11))  # the 08:00 run is 3 h old
    async with home.open() as scheduler:
        job = await scheduler.get("digest.daily")
        lines = await scheduler.overview()
    assert home.sink.runs == []
    (skipped,) = await home.events("job.skipped")
    assert skipped.payload["count"] == 1 and skipped.payload["reasons"] == ["older than 2h"]
    assert await home.scalar("SELECT status FROM job_runs") == RunStatus.SKIPPED
    assert job is not None and job.next_run_at == berlin(2026, 6, 2, 8)
    assert lines[0].skipped == 1
    # Within the age it runs, late.
    home.clock.set(berlin(2026, 6, 2, 9, 30))
    async with home.open():
        pass
    (run,) = home.sink.runs
    assert run.late and run.scheduled_at == berlin(2026, 6, 2, 8)


async def test_restarts_never_duplicate_jobs_or_runs(home: Home) -> None:
    moments = [berlin(2026, 6, 1, 7), berlin(2026, 6, 1, 9), berlin(2026, 6, 1, 9, 5)]
    for moment in moments:
        home.clock.set(moment)
        async with home.open() as scheduler:
            await scheduler.add(DIGEST)  # the feature re-declares its job at every start
            await scheduler.run_due()
            await scheduler.run_due()
    assert await home.scalar("SELECT COUNT(*) FROM jobs") == 1
    assert await home.scalar("SELECT COUNT(*) FROM job_runs") == 1
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1
    assert len(home.sink.runs) == 1
    assert len(await home.events("job.ran")) == 1


async def test_two_schedulers_racing_make_one_run(home: Home) -> None:
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
    home.clock.set(berlin(2026, 6, 1, 8))
    async with home.open(start=False) as first, home.open(start=False) as second:
        reports = await asyncio.gather(first.run_due(), second.run_due())
    assert sum(len(r.submitted) for r in reports) == 1
    assert await home.scalar("SELECT COUNT(*) FROM job_runs") == 1
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1


async def test_daily_job_across_both_dst_changes_fires_at_0800_local(home: Home) -> None:
    fired: list[datetime] = []
    for start in (berlin(2026, 3, 27, 9), berlin(2026, 10, 23, 9)):
        home.clock.set(start)
        async with home.open() as scheduler:
            await scheduler.add(replace(DIGEST, id=f"daily.{start:%m}"))
            for _ in range(4):
                job = await scheduler.get(f"daily.{start:%m}")
                assert job is not None and job.next_run_at is not None
                home.clock.set(job.next_run_at)
                report = await scheduler.run_due()
                assert [run.job_id for run in report.submitted] == [job.id]
                assert not report.submitted[0].late
                fired.append(report.submitted[0].scheduled_at)
            await scheduler.cancel(f"daily.{start:%m}")
    assert fired == [
        datetime(2026, 3, 28, 7, tzinfo=UTC),
        datetime(2026, 3, 29, 6, tzinfo=UTC),  # summer time from this day
        datetime(2026, 3, 30, 6, tzinfo=UTC),
        datetime(2026, 3, 31, 6, tzinfo=UTC),
        datetime(2026, 10, 24, 6, tzinfo=UTC),
        datetime(2026, 10, 25, 7, tzinfo=UTC),  # winter time from this day
        datetime(2026, 10, 26, 7, tzinfo=UTC),
        datetime(2026, 10, 27, 7, tzinfo=UTC),
    ]
    assert {moment.astimezone(BERLIN).strftime("%H:%M") for moment in fired} == {"08:00"}


async def test_crash_between_recording_and_submit_runs_once_after_restart(home: Home) -> None:
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
        home.clock.set(berlin(2026, 6, 1, 8))
        home.sink.fail_before = 1
        report = await scheduler.run_due()
        assert report.submitted == () and len(report.failed) == 1
    assert await home.scalar("SELECT status FROM job_runs") == RunStatus.PENDING
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 0
    home.clock.set(berlin(2026, 6, 1, 8, 30))
    async with home.open() as scheduler:
        assert (await scheduler.run_due()).submitted == ()
    (run,) = home.sink.runs
    assert run.scheduled_at == berlin(2026, 6, 1, 8)
    assert await home.scalar("SELECT status FROM job_runs") == RunStatus.SUBMITTED
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1
    assert len(await home.events("job.submit_failed")) == 1
    assert len(await home.events("job.resubmitted")) == 1


async def test_crash_after_submit_before_confirming_is_deduped_by_key(home: Home) -> None:
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
        home.clock.set(berlin(2026, 6, 1, 8))
        home.sink.fail_after = 1  # the task is written, then the process "dies"
        await scheduler.run_due()
    async with home.open():
        pass
    assert len(home.sink.runs) == 2  # submitted twice ...
    assert home.sink.runs[0].idempotency_key == home.sink.runs[1].idempotency_key
    assert await home.scalar("SELECT COUNT(*) FROM tasks") == 1  # ... one task
    assert await home.scalar("SELECT status FROM job_runs") == RunStatus.SUBMITTED


async def test_pause_resume_cancel(home: Home) -> None:
    async with home.open() as scheduler:
        port: Schedules = scheduler  # features see only the port
        await port.add(DIGEST)
        paused = await port.pause("digest.daily")
        assert paused.state is JobState.PAUSED
        assert (await port.pause("digest.daily")).state is JobState.PAUSED  # no-op
        home.clock.set(berlin(2026, 6, 3, 9))
        assert (await scheduler.run_due()).submitted == ()
        resumed = await port.resume("digest.daily")
        assert resumed.state is JobState.ACTIVE
        assert resumed.next_run_at == berlin(2026, 6, 4, 8)  # from now, not the pause
        home.clock.set(berlin(2026, 6, 4, 8))
        assert len((await scheduler.run_due()).submitted) == 1
        cancelled = await port.cancel("digest.daily")
        assert cancelled.state is JobState.CANCELLED and cancelled.next_run_at is None
        home.clock.set(berlin(2026, 6, 5, 8))
        assert (await scheduler.run_due()).submitted == ()
        with pytest.raises(ScheduleError, match="is cancelled"):
            await port.resume("digest.daily")
        with pytest.raises(UnknownJob, match="/schedule lists the jobs"):
            await port.pause("nope")
        assert [j.id for j in await port.list_for("digest")] == ["digest.daily"]
        assert await port.list_for("reminders") == []
    kinds = [e.kind for e in await home.events("job")]
    assert kinds.count("job.paused") == 1
    assert kinds.count("job.resumed") == 1
    assert kinds.count("job.cancelled") == 1


async def test_redeclaring_keeps_the_operators_pause_and_a_change_moves_the_next_run(
    home: Home,
) -> None:
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
        await scheduler.pause("digest.daily")
    async with home.open() as scheduler:
        again = await scheduler.add(DIGEST)
        assert again.state is JobState.PAUSED
        await scheduler.resume("digest.daily")
        moved = await scheduler.add(replace(DIGEST, schedule="daily at 18:30"))
        assert moved.next_run_at == berlin(2026, 6, 1, 18, 30)
        with pytest.raises(ScheduleError, match="belongs to digest"):
            await scheduler.add(replace(DIGEST, owner="reminders"))
    assert await home.scalar("SELECT COUNT(*) FROM jobs") == 1


async def test_one_off_job_is_done_after_its_run(home: Home) -> None:
    spec = JobSpec(
        id="reminder:12",
        owner="reminders",
        intent_kind="remind",
        schedule="2026-06-01T09:00+02:00",
        payload={"text": "call Acme"},
    )
    async with home.open() as scheduler:
        await scheduler.add(spec)
        home.clock.set(berlin(2026, 6, 1, 9))
        assert len((await scheduler.run_due()).submitted) == 1
        job = await scheduler.get("reminder:12")
        assert job is not None and job.state is JobState.DONE and job.next_run_at is None
        assert (await scheduler.add(spec)).state is JobState.DONE  # re-declared: stays done
        home.clock.set(berlin(2026, 6, 2, 9))
        assert (await scheduler.run_due()).submitted == ()
        with pytest.raises(ScheduleError, match="in the past"):
            await scheduler.add(replace(spec, id="reminder:13"))
    assert len(await home.events("job.done")) == 1


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"id": "has space"}, "job id"),
        ({"schedule": "whenever"}, "I can't read"),
        ({"timezone": "Mars/Base"}, "IANA"),
        ({"misfire": "twice"}, "misfire policy"),
        ({"payload": {"when": datetime(2026, 1, 1, tzinfo=UTC)}}, "plain JSON"),
    ],
)
async def test_bad_specs_change_nothing(home: Home, change: dict[str, Any], says: str) -> None:
    async with home.open() as scheduler:
        with pytest.raises(ScheduleError, match=says):
            await scheduler.add(replace(DIGEST, **change))
    assert await home.scalar("SELECT COUNT(*) FROM jobs") == 0


async def test_schedule_listing(home: Home) -> None:
    async with home.open() as scheduler:
        await scheduler.add(DIGEST)
        home.clock.set(berlin(2026, 6, 1, 10))
        await scheduler.run_due()
        text = render_jobs(await scheduler.overview())
    assert text == (
        "digest.daily · digest · 'every day at 8:00' (Europe/Berlin)"
        " · next 2026-06-02 08:00 CEST (06:00 UTC) · active"
        " · last 2026-06-01 08:00 CEST, late"
    )


async def test_the_apscheduler_timer_fires_run_due(home: Home) -> None:
    # The manual clock stands an hour behind the wall clock, so the alarm armed for
    # the job's instant is already past for APScheduler and goes off at once.
    home.clock.set(datetime.now(UTC) - timedelta(hours=1))
    async with home.open(arm_timer=True) as scheduler:
        soon = home.clock.now() + timedelta(minutes=1)
        await scheduler.add(
            JobSpec(id="tick", owner="ops", intent_kind="ping", schedule=soon.isoformat())
        )
        # add() armed the alarm and returned without yielding to the loop, so the job
        # is due by our clock before the alarm's callback can run.
        home.clock.set(soon)
        await wait_for_event(home.sink.arrived, 30)
        assert [run.job_id for run in home.sink.runs] == ["tick"]
    assert await home.scalar("SELECT status FROM job_runs") == RunStatus.SUBMITTED
