"""The scheduler: turns time into runs, each submitted once, even across restarts.

SQLite (``memory/jobs.py``) is the truth: jobs with stable ids, their next run as a UTC
instant, and one ``job_runs`` row per scheduled instant handled. APScheduler is only
the alarm clock: one date job (fixed id) armed for the earliest next run, whose
function calls :meth:`Scheduler.run_due` and re-arms. Nothing is pickled, so a restart
rebuilds everything from the tables and can never duplicate a job.

Exactly once, by construction:

1. :meth:`Scheduler.run_due` records each run as ``pending`` in the same transaction
   that advances the job (``UNIQUE(job_id, scheduled_at)``: a second scheduler or a
   second pass finds the row and does nothing);
2. it then calls ``submit(run)``; the coordinator creates the task with
   ``run.idempotency_key`` (``job:<id>@<instant>``) and ignores a key it already has;
3. only then is the row marked ``submitted``.

A crash between 1 and 2 leaves a pending row: the next start (or the next pass, if
``submit`` raised) submits it again. A crash between 2 and 3 submits it again too,
and the coordinator's idempotency key turns that into a no-op. So a run is never
lost and never doubled, provided ``submit`` is idempotent by key (the coordinator's
``tasks.idempotency_key`` is UNIQUE).

Features get the narrow :class:`Schedules` port, never the scheduler itself.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, Self

from agents.schedules import (
    JobLine,
    PlannedRun,
    ScheduleError,
    next_fire,
    parse_compiled,
    parse_misfire,
    parse_schedule,
    plan_runs,
    zone,
)
from memory.clock import Clock
from memory.events import EventLog
from memory.jobs import Job, JobRepo, JobRunRow, JobState
from memory.store import Store

log = logging.getLogger(__name__)

ACTOR: Final = "scheduler"
#: The one APScheduler job soloops arms.
WAKE_JOB_ID: Final = "soloops.scheduler.wake"
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")


class UnknownJob(ScheduleError):
    """No job has this id."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job a feature (or the operator) asks for.

    ``id`` is stable (``digest.daily``, ``reminder:12``): adding the same id again
    replaces the definition, never duplicates it. ``payload`` is the intent's JSON
    fields, including the conversation to answer. ``timezone`` None means the
    scheduler's default (``SOLOOPS_TIMEZONE``). ``misfire`` is ``once``, ``all`` or
    ``skip-if-older-than <duration>``.
    """

    id: str
    owner: str
    intent_kind: str
    schedule: str
    payload: dict[str, Any] = field(default_factory=dict)
    timezone: str | None = None
    misfire: str = "once"


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run handed to ``submit``: what to do, for which instant, and whether late.

    ``missed_since`` is the oldest missed instant this run stands for (None when on
    time); ``coalesced`` counts missed instants folded into it (policy ``once``).
    """

    job_id: str
    owner: str
    intent_kind: str
    payload: dict[str, Any]
    scheduled_at: datetime
    late: bool = False
    missed_since: datetime | None = None
    coalesced: int = 0

    @property
    def idempotency_key(self) -> str:
        """``job:<id>@<scheduled instant, UTC ISO>``: the task's key at the coordinator."""
        return f"job:{self.job_id}@{self.scheduled_at.astimezone(UTC).isoformat()}"

    @classmethod
    def of(cls, job: Job, run: PlannedRun | JobRunRow) -> JobRun:
        """``job``'s run for the instant ``run`` (planned now, or recorded before a crash)."""
        return cls(
            job_id=job.id,
            owner=job.owner,
            intent_kind=job.intent_kind,
            payload=job.payload,
            scheduled_at=run.scheduled_at,
            late=run.late,
            missed_since=run.missed_since,
            coalesced=run.coalesced,
        )


Submit = Callable[[JobRun], Awaitable[None]]


class Schedules(Protocol):
    """The scheduler as features see it: their jobs, nothing else."""

    async def add(self, spec: JobSpec) -> Job:
        """Create or replace the job ``spec.id``."""
        ...

    async def cancel(self, job_id: str, *, actor: str = ...) -> Job:
        """Stop a job for good."""
        ...

    async def pause(self, job_id: str, *, actor: str = ...) -> Job:
        """Stop a job until resumed."""
        ...

    async def resume(self, job_id: str, *, actor: str = ...) -> Job:
        """Restart a paused job from its next instant after now."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job with this id."""
        ...

    async def list_for(self, owner: str) -> list[Job]:
        """The jobs one feature owns."""
        ...

    async def list_all(self) -> list[Job]:
        """Every job (read only: a feature lists the jobs that will come to it)."""
        ...


@dataclass(frozen=True, slots=True)
class DueReport:
    """What one :meth:`Scheduler.run_due` pass did."""

    submitted: tuple[JobRun, ...] = ()
    failed: tuple[JobRun, ...] = ()
    skipped: int = 0


class _Timer:
    """APScheduler as an alarm clock: one date job, re-armed after every change.

    APScheduler is imported off the start-up path: its import scans every installed
    package's entry points and loads ``multiprocessing`` (~0.1 s here), which a
    scripted ``/help`` should not pay. Until it is loaded, an asyncio timer stands in,
    set for the wanted wake or ``LOAD_AFTER_S`` after start, whichever comes first;
    when it goes off APScheduler is started and armed for the wanted wake (at once if
    that has passed: a date job has no misfire grace here).
    """

    LOAD_AFTER_S = 2.0

    def __init__(self, wake: Callable[[], Awaitable[None]]) -> None:
        self._wake = wake
        self._aps: Any = None
        self._on = False
        self._wanted: datetime | None = None
        self._loading: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._on = True

    def arm(self, at: datetime | None) -> None:
        if not self._on:
            return
        if self._aps is None:
            self._wanted = at
            if at is None and self._loading is not None:
                self._loading.cancel()
                self._loading = None
            elif at is not None:
                delay = min(self.LOAD_AFTER_S, (at - datetime.now(UTC)).total_seconds())
                if self._loading is not None:
                    self._loading.cancel()
                self._loading = asyncio.get_running_loop().call_later(max(0.0, delay), self._load)
            return
        if at is None:
            if self._aps.get_job(WAKE_JOB_ID) is not None:
                self._aps.remove_job(WAKE_JOB_ID)
            return
        from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]  # APScheduler 3 ships no type hints

        self._aps.add_job(
            self._fire,
            DateTrigger(run_date=at, timezone=UTC),
            id=WAKE_JOB_ID,
            replace_existing=True,
            # A late wake (a busy loop, a suspended laptop) still runs: run_due decides.
            misfire_grace_time=None,
            coalesce=True,
            # The wake re-arms itself while still running; run_due is serialized by a lock.
            max_instances=16,
        )

    async def _fire(self) -> None:
        try:
            await self._wake()
        except asyncio.CancelledError:
            # Shutting down while a wake was under way: its pass is redone at the next
            # start (SQLite is the truth). Not an error for APScheduler to log as one.
            return

    def _load(self) -> None:
        self._loading = None
        if not self._on or self._aps is not None:
            return
        from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped]  # as above
            AsyncIOScheduler,
        )

        self._aps = AsyncIOScheduler(timezone=UTC)
        self._aps.start()
        self.arm(self._wanted)

    def stop(self) -> None:
        self._on = False
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None


class Scheduler:
    """Jobs in SQLite, runs through ``submit``, APScheduler as the timer.

    Args:
        store: the open store.
        events: the event log (every run, late run and skip is an event).
        clock: what "now" is; tests move a manual clock and call :meth:`run_due`.
        submit: ``async def submit(run: JobRun) -> None``; must be idempotent by
            ``run.idempotency_key`` (the coordinator's task key is).
        timezone: the default IANA zone for jobs (``SOLOOPS_TIMEZONE``).
        arm_timer: start APScheduler on :meth:`start`; False leaves timing to the caller.
        retry_after: when ``submit`` failed, how soon the timer tries again.
    """

    def __init__(
        self,
        store: Store,
        events: EventLog,
        clock: Clock,
        submit: Submit,
        *,
        timezone: str = "UTC",
        arm_timer: bool = True,
        retry_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._submit = submit
        self._timezone = zone(timezone).key
        self._repo = JobRepo(store, events)
        self._timer = _Timer(self._wake) if arm_timer else None
        self._retry_after = retry_after
        self._lock = asyncio.Lock()
        self._started = False

    @property
    def running(self) -> bool:
        """Whether the scheduler is started (for ``/healthz``)."""
        return self._started

    @property
    def repo(self) -> JobRepo:
        """The jobs' repository (read access for digests, exports, /schedule)."""
        return self._repo

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Catch up: resubmit runs a crash left pending, apply each job's misfire
        policy to runs missed while down (each late run and skip is an event), then
        arm the timer for the earliest next run."""
        self._started = True
        report = await self.run_due()
        if report.submitted or report.skipped:
            log.info(
                "scheduler caught up: %d run(s) submitted, %d skipped",
                len(report.submitted),
                report.skipped,
            )
        if self._timer is not None:
            self._timer.start()
        await self._arm()

    async def stop(self) -> None:
        """Disarm the timer and wait for a pass in progress to end."""
        self._started = False
        # A pass in progress finishes first (its runs get confirmed); wakes after this
        # see the scheduler stopped and return at once.
        async with self._lock:
            if self._timer is not None:
                self._timer.stop()

    # -- jobs -----------------------------------------------------------------------

    async def add(self, spec: JobSpec) -> Job:
        """Create the job ``spec.id`` or replace its definition.

        Same id, same schedule and zone: the stored next run, last run and state are
        kept (a restart re-declaring its jobs changes nothing, and missed runs stay
        due). A changed schedule starts from its next instant after now. A paused or
        cancelled job stays so (the operator's decision outlives a re-declaration); a
        done one-off comes back only with a new time.

        Raises:
            ScheduleError: bad id, schedule, time zone, misfire policy or payload; a
                one-off whose time has passed; an id owned by another feature.
        """
        _check_spec(spec)
        schedule = parse_schedule(spec.schedule)
        tz = zone(spec.timezone or self._timezone)
        policy = parse_misfire(spec.misfire)
        now = self._clock.now()
        async with self._store.write() as tx:
            old = await self._repo.get(spec.id, tx)
            if old is not None and old.owner != spec.owner:
                raise ScheduleError(f"job id {spec.id!r} belongs to {old.owner}; pick another id")
            changed = old is None or old.compiled != schedule.compiled or old.timezone != tz.key
            upcoming = next_fire(schedule, tz, now)
            if old is None:
                state, next_run, last_run = JobState.ACTIVE, upcoming, None
            elif not changed:
                state, next_run, last_run = old.state, old.next_run_at, old.last_run_at
            else:
                revive = old.state in (JobState.ACTIVE, JobState.DONE)
                state = JobState.ACTIVE if revive else old.state
                next_run, last_run = upcoming, old.last_run_at
            if changed and state is JobState.ACTIVE and next_run is None:
                raise ScheduleError(
                    f"{spec.schedule!r} is in the past (now {now:%Y-%m-%d %H:%M} UTC);"
                    " give a future time"
                )
            job = Job(
                id=spec.id,
                owner=spec.owner,
                intent_kind=spec.intent_kind,
                payload=dict(spec.payload),
                schedule=schedule.text,
                compiled=schedule.compiled,
                timezone=tz.key,
                misfire=policy.text,
                state=state,
                next_run_at=next_run,
                last_run_at=last_run,
                created_at=now if old is None else old.created_at,
                updated_at=now,
            )
            await self._repo.upsert(tx, job, actor=spec.owner)
        await self._arm()
        return job

    async def pause(self, job_id: str, *, actor: str = "operator") -> Job:
        """Stop an active job until :meth:`resume`; pausing a paused job is a no-op.

        Raises:
            UnknownJob: no such job.
            ScheduleError: the job is cancelled or done.
        """
        return await self._move(job_id, JobState.PAUSED, actor)

    async def resume(self, job_id: str, *, actor: str = "operator") -> Job:
        """Restart a paused job from its first instant after now (runs that fell in
        the pause are not made: pausing said not to). No-op on an active job.

        Raises:
            UnknownJob: no such job.
            ScheduleError: the job is cancelled or done.
        """
        return await self._move(job_id, JobState.ACTIVE, actor)

    async def cancel(self, job_id: str, *, actor: str = "operator") -> Job:
        """Stop a job for good (its rows stay, for the record). No-op when cancelled.

        Raises:
            UnknownJob: no such job.
            ScheduleError: the job is done.
        """
        return await self._move(job_id, JobState.CANCELLED, actor)

    async def get(self, job_id: str) -> Job | None:
        """The job with this id."""
        return await self._repo.get(job_id)

    async def list(self) -> builtins.list[Job]:
        """Every job, by id."""
        return await self._repo.list()

    async def list_all(self) -> builtins.list[Job]:
        """Every job, by id (the :class:`Schedules` port's name for :meth:`list`)."""
        return await self._repo.list()

    async def list_for(self, owner: str) -> builtins.list[Job]:
        """The jobs one feature owns, by id."""
        return await self._repo.list(owner)

    async def overview(self) -> builtins.list[JobLine]:
        """What ``/schedule`` shows (feed it to :func:`agents.schedules.render_jobs`):
        live jobs, with their last run's late mark and skips in the last 7 days."""
        since = self._clock.now() - timedelta(days=7)
        lines: builtins.list[JobLine] = []
        for job in await self._repo.list():
            if job.state is JobState.CANCELLED:
                continue
            last = await self._repo.last_run(job.id)
            lines.append(
                JobLine(
                    id=job.id,
                    what=job.intent_kind,
                    schedule=job.schedule,
                    timezone=job.timezone,
                    state=str(job.state),
                    next_run_at=job.next_run_at if job.state is JobState.ACTIVE else None,
                    last_run_at=None if last is None else last.scheduled_at,
                    last_late=bool(last and last.late),
                    skipped=await self._repo.skipped_since(job.id, since),
                )
            )
        return lines

    # -- runs -----------------------------------------------------------------------

    async def run_due(self) -> DueReport:
        """Do all due work for the clock's now: submit runs left pending, then plan,
        record and submit each due job's runs under its misfire policy.

        Failures of ``submit`` are events (``job.submit_failed``) and leave the run
        pending for the next pass; they do not stop other runs.
        """
        async with self._lock:
            now = self._clock.now()
            runs = [await self._resume_pending(row) for row in await self._repo.pending_runs()]
            retry = [run for run in runs if run is not None]
            fresh: builtins.list[JobRun] = []
            skipped = 0
            for job in await self._repo.due(now):
                made, skips = await self._fire(job.id, now)
                fresh += made
                skipped += skips
            submitted: builtins.list[JobRun] = []
            failed: builtins.list[JobRun] = []
            for run in retry + fresh:
                (submitted if await self._hand_over(run) else failed).append(run)
        await self._arm()
        return DueReport(tuple(submitted), tuple(failed), skipped)

    async def _fire(self, job_id: str, now: datetime) -> tuple[builtins.list[JobRun], int]:
        async with self._store.write() as tx:
            # Re-read under the write lock: another pass or process may have handled it.
            job = await self._repo.get(job_id, tx)
            if (
                job is None
                or job.state is not JobState.ACTIVE
                or job.next_run_at is None
                or job.next_run_at > now
            ):
                return [], 0
            schedule = parse_compiled(job.compiled, job.schedule)
            plan = plan_runs(
                schedule, zone(job.timezone), parse_misfire(job.misfire), job.next_run_at, now
            )
            made: builtins.list[JobRun] = []
            for planned in plan.runs:
                run = JobRun.of(job, planned)
                if await self._repo.record_run(
                    tx,
                    job.id,
                    run.scheduled_at,
                    idempotency_key=run.idempotency_key,
                    late=run.late,
                    missed_since=run.missed_since,
                    coalesced=run.coalesced,
                    now=now,
                ):
                    made.append(run)
            skips = [(skip.scheduled_at, skip.reason) for skip in plan.skipped]
            await self._repo.record_skips(tx, job.id, skips, truncated=plan.truncated, now=now)
            # Always advance, even with nothing handled (a stored next run that is not
            # an instant of the schedule): a due job must move past now, or the timer
            # would wake for it again at once.
            await self._repo.advance(
                tx, job.id, last_run_at=plan.handled_until, next_run_at=plan.next_run_at, now=now
            )
        return made, len(skips)

    async def _resume_pending(self, row: JobRunRow) -> JobRun | None:
        job = await self._repo.get(row.job_id)
        if job is None:  # pragma: no cover - job rows are never deleted
            return None
        run = JobRun.of(job, row)
        await self._events.record(
            "job.resubmitted",
            actor=ACTOR,
            subject=f"job:{job.id}",
            payload={"key": run.idempotency_key, "recorded_at": row.at.isoformat()},
        )
        return run

    async def _hand_over(self, run: JobRun) -> bool:
        try:
            await self._submit(run)
        except Exception as exc:
            log.warning("submitting %s failed: %s", run.idempotency_key, exc)
            await self._events.record(
                "job.submit_failed",
                actor=ACTOR,
                subject=f"job:{run.job_id}",
                payload={"key": run.idempotency_key, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False
        async with self._store.write() as tx:
            await self._repo.mark_submitted(tx, run.job_id, run.scheduled_at, now=self._clock.now())
        return True

    async def _move(self, job_id: str, target: JobState, actor: str) -> Job:
        now = self._clock.now()
        async with self._store.write() as tx:
            job = await self._repo.get(job_id, tx)
            if job is None:
                raise UnknownJob(f"no job {job_id!r}; /schedule lists the jobs")
            if job.state is target:
                return job
            if job.state in (JobState.CANCELLED, JobState.DONE):
                raise ScheduleError(f"job {job_id!r} is {job.state}; add it again to reschedule")
            next_run = job.next_run_at
            if target is JobState.ACTIVE:
                schedule = parse_compiled(job.compiled, job.schedule)
                next_run = next_fire(schedule, zone(job.timezone), now)
            elif target is JobState.CANCELLED:
                next_run = None
            await self._repo.set_state(
                tx, job_id, target, next_run_at=next_run, now=now, actor=actor
            )
        await self._arm()
        return replace(job, state=target, next_run_at=next_run, updated_at=now)

    # -- timer ----------------------------------------------------------------------

    async def _wake(self) -> None:
        if not self._started:
            return
        try:
            await self.run_due()
        except Exception:
            # The timer must survive a bad pass (e.g. the disk is full): log and re-arm.
            log.exception("scheduler pass failed; retrying in %s", self._retry_after)
            if self._timer is not None and self._started:
                self._timer.arm(self._clock.now() + self._retry_after)

    async def _arm(self) -> None:
        if self._timer is None or not self._started:
            return
        wake = await self._repo.earliest_next()
        if await self._repo.pending_runs():
            retry = self._clock.now() + self._retry_after
            wake = retry if wake is None else min(wake, retry)
        self._timer.arm(wake)


def _check_spec(spec: JobSpec) -> None:
    if not _JOB_ID.fullmatch(spec.id):
        raise ScheduleError(
            f"job id {spec.id!r} must be 1-128 letters, digits or . _ : @ / + -"
            " and start with a letter or digit"
        )
    if not spec.owner or not spec.intent_kind:
        raise ScheduleError("a job needs its owner feature and the intent kind it submits")
    try:
        json.dumps(spec.payload)
    except (TypeError, ValueError) as exc:
        raise ScheduleError(f"job {spec.id!r}: the payload must be plain JSON ({exc})") from None


def as_port(scheduler: Scheduler) -> Schedules:
    """The scheduler behind the narrow port features are given (checked by mypy)."""
    return scheduler
