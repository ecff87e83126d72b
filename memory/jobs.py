"""Scheduled jobs and their runs: the scheduler's truth in SQLite.

``jobs`` holds one row per stable job id (``digest.daily``, ``reminder:12``): what to
submit, the schedule as written and compiled, its time zone, misfire policy, state,
the next instant to run (UTC) and the last instant handled. ``job_runs`` holds one row
per scheduled instant handled, ``UNIQUE(job_id, scheduled_at)``, so an instant is
recorded once however often the process restarts or two schedulers race.

A run row starts ``pending`` (recorded, not yet confirmed submitted), becomes
``submitted`` once the coordinator took it, or is ``skipped`` by a misfire policy.

Every write takes the caller's transaction and appends its event in it (``job.*``),
so state and log commit together. The decisions (what is due, what a misfire
policy does) live in ``agents/``; this module stores and queries.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.events import Draft, EventLog
from memory.store import Store, Transaction


class JobState(StrEnum):
    """Where a job is in its life."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class RunStatus(StrEnum):
    """What happened to one scheduled instant."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    SKIPPED = "skipped"


_STATE_EVENTS = {
    JobState.PAUSED: "job.paused",
    JobState.ACTIVE: "job.resumed",
    JobState.CANCELLED: "job.cancelled",
    JobState.DONE: "job.done",
}


@dataclass(frozen=True, slots=True)
class Job:
    """One stored job."""

    id: str
    owner: str
    intent_kind: str
    payload: dict[str, Any]
    schedule: str
    compiled: str
    timezone: str
    misfire: str
    state: JobState
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class JobRunRow:
    """One scheduled instant handled for a job."""

    job_id: str
    scheduled_at: datetime
    status: RunStatus
    late: bool
    missed_since: datetime | None
    coalesced: int
    reason: str | None
    idempotency_key: str | None
    at: datetime
    submitted_at: datetime | None


def _time(value: str | None) -> datetime | None:
    return None if value is None else from_iso(value)


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else to_iso(value)


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        intent_kind=row["intent_kind"],
        payload=json.loads(row["payload"]),
        schedule=row["schedule"],
        compiled=row["compiled"],
        timezone=row["timezone"],
        misfire=row["misfire"],
        state=JobState(row["state"]),
        next_run_at=_time(row["next_run_at"]),
        last_run_at=_time(row["last_run_at"]),
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )


def _run(row: Any) -> JobRunRow:
    return JobRunRow(
        job_id=row["job_id"],
        scheduled_at=from_iso(row["scheduled_at"]),
        status=RunStatus(row["status"]),
        late=bool(row["late"]),
        missed_since=_time(row["missed_since"]),
        coalesced=int(row["coalesced"]),
        reason=row["reason"],
        idempotency_key=row["idempotency_key"],
        at=from_iso(row["at"]),
        submitted_at=_time(row["submitted_at"]),
    )


class JobRepo:
    """Queries and writes over ``jobs`` and ``job_runs``."""

    def __init__(self, store: Store, events: EventLog) -> None:
        self._store = store
        self._events = events

    # -- jobs -----------------------------------------------------------------------

    async def upsert(self, tx: Transaction, job: Job, *, actor: str) -> bool:
        """Write ``job`` under its id: insert, or replace the stored definition (its
        ``created_at`` is kept). Return True when the id was new. Appends ``job.scheduled``.
        """
        existed = await tx.fetchone("SELECT 1 FROM jobs WHERE id = ?", (job.id,)) is not None
        await tx.execute(
            "INSERT INTO jobs (id, owner, intent_kind, payload, schedule, compiled, timezone,"
            " misfire, state, next_run_at, last_run_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET owner = excluded.owner,"
            " intent_kind = excluded.intent_kind, payload = excluded.payload,"
            " schedule = excluded.schedule, compiled = excluded.compiled,"
            " timezone = excluded.timezone, misfire = excluded.misfire, state = excluded.state,"
            " next_run_at = excluded.next_run_at, last_run_at = excluded.last_run_at,"
            " updated_at = excluded.updated_at",
            (
                job.id,
                job.owner,
                job.intent_kind,
                json.dumps(job.payload, sort_keys=True),
                job.schedule,
                job.compiled,
                job.timezone,
                job.misfire,
                job.state,
                _stamp(job.next_run_at),
                _stamp(job.last_run_at),
                to_iso(job.created_at),
                to_iso(job.updated_at),
            ),
        )
        await self._events.append(
            tx,
            "job.scheduled",
            actor=actor,
            subject=f"job:{job.id}",
            payload={
                "new": not existed,
                "owner": job.owner,
                "kind": job.intent_kind,
                "schedule": job.schedule,
                "timezone": job.timezone,
                "misfire": job.misfire,
                "state": str(job.state),
                "next_run_at": _stamp(job.next_run_at),
            },
        )
        return not existed

    async def get(self, job_id: str, tx: Transaction | None = None) -> Job | None:
        """The job with this id; inside ``tx`` when given (sees its own writes)."""
        sql, params = "SELECT * FROM jobs WHERE id = ?", (job_id,)
        row = await (tx.fetchone(sql, params) if tx else self._store.fetchone(sql, params))
        return None if row is None else _job(row)

    async def list(self, owner: str | None = None) -> list[Job]:
        """All jobs (of one owner when given), by id."""
        if owner is None:
            rows = await self._store.fetchall("SELECT * FROM jobs ORDER BY id")
        else:
            rows = await self._store.fetchall(
                "SELECT * FROM jobs WHERE owner = ? ORDER BY id", (owner,)
            )
        return [_job(row) for row in rows]

    async def set_state(
        self,
        tx: Transaction,
        job_id: str,
        state: JobState,
        *,
        next_run_at: datetime | None,
        now: datetime,
        actor: str,
    ) -> bool:
        """Move a job to ``state`` with its new next run; appends ``job.paused``,
        ``job.resumed`` (to active), ``job.cancelled`` or ``job.done``."""
        changed = await tx.execute(
            "UPDATE jobs SET state = ?, next_run_at = ?, updated_at = ? WHERE id = ?",
            (state, _stamp(next_run_at), to_iso(now), job_id),
        )
        if changed:
            await self._events.append(
                tx,
                _STATE_EVENTS[state],
                actor=actor,
                subject=f"job:{job_id}",
                payload={"next_run_at": _stamp(next_run_at)},
            )
        return changed == 1

    async def advance(
        self,
        tx: Transaction,
        job_id: str,
        *,
        last_run_at: datetime | None,
        next_run_at: datetime | None,
        now: datetime,
    ) -> None:
        """After handling instants up to ``last_run_at`` (None: keep the stored one):
        store it and the next run; a job with no next run is done (``job.done``)."""
        await tx.execute(
            "UPDATE jobs SET last_run_at = COALESCE(?, last_run_at), next_run_at = ?,"
            " updated_at = ?,"
            " state = CASE WHEN ? IS NULL THEN ? ELSE state END WHERE id = ?",
            (
                _stamp(last_run_at),
                _stamp(next_run_at),
                to_iso(now),
                _stamp(next_run_at),
                JobState.DONE,
                job_id,
            ),
        )
        if next_run_at is None:
            await self._events.append(
                tx, "job.done", actor="scheduler", subject=f"job:{job_id}", payload={}
            )

    async def due(self, now: datetime) -> builtins.list[Job]:
        """Active jobs whose next run is at or before ``now``, earliest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM jobs WHERE state = ? AND next_run_at <= ? ORDER BY next_run_at, id",
            (JobState.ACTIVE, to_iso(now)),
        )
        return [_job(row) for row in rows]

    async def earliest_next(self) -> datetime | None:
        """The earliest next run of any active job."""
        value = await self._store.scalar(
            "SELECT MIN(next_run_at) FROM jobs WHERE state = ?", (JobState.ACTIVE,)
        )
        return None if value is None else from_iso(value)

    # -- runs -----------------------------------------------------------------------

    async def record_run(
        self,
        tx: Transaction,
        job_id: str,
        scheduled_at: datetime,
        *,
        idempotency_key: str,
        late: bool,
        missed_since: datetime | None,
        coalesced: int,
        now: datetime,
        actor: str = "scheduler",
    ) -> bool:
        """Record the intent to run ``job_id`` for ``scheduled_at`` (status pending).

        ``INSERT ... ON CONFLICT DO NOTHING``: returns False, and writes no event, when
        that instant was already recorded. Appends ``job.ran`` and, for a late run,
        ``job.late`` saying since when.
        """
        inserted = await tx.execute(
            "INSERT INTO job_runs (job_id, scheduled_at, status, late, missed_since, coalesced,"
            " idempotency_key, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(job_id, scheduled_at) DO NOTHING",
            (
                job_id,
                to_iso(scheduled_at),
                RunStatus.PENDING,
                1 if late else 0,
                _stamp(missed_since),
                coalesced,
                idempotency_key,
                to_iso(now),
            ),
        )
        if not inserted:
            return False
        subject = f"job:{job_id}"
        drafts = [
            Draft(
                "job.ran",
                actor,
                subject,
                {"scheduled_at": to_iso(scheduled_at), "late": late, "key": idempotency_key},
            )
        ]
        if late:
            drafts.append(
                Draft(
                    "job.late",
                    actor,
                    subject,
                    {
                        "scheduled_at": to_iso(scheduled_at),
                        "missed_since": _stamp(missed_since),
                        "coalesced": coalesced,
                    },
                )
            )
        await self._events.append_many(tx, drafts)
        return True

    async def record_skips(
        self,
        tx: Transaction,
        job_id: str,
        skips: Sequence[tuple[datetime, str]],
        *,
        truncated: bool,
        now: datetime,
        actor: str = "scheduler",
    ) -> int:
        """Record skipped instants ``(scheduled_at, reason)`` and one ``job.skipped``
        event naming how many, the first and last, and why. Returns rows written."""
        written = 0
        for scheduled_at, reason in skips:
            written += bool(
                await tx.execute(
                    "INSERT INTO job_runs (job_id, scheduled_at, status, reason, at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(job_id, scheduled_at) DO NOTHING",
                    (job_id, to_iso(scheduled_at), RunStatus.SKIPPED, reason, to_iso(now)),
                )
            )
        if skips or truncated:
            await self._events.append(
                tx,
                "job.skipped",
                actor=actor,
                subject=f"job:{job_id}",
                payload={
                    "count": len(skips),
                    "more_before_first": truncated,
                    "first": _stamp(skips[0][0]) if skips else None,
                    "last": _stamp(skips[-1][0]) if skips else None,
                    "reasons": sorted({reason for _, reason in skips}),
                },
            )
        return written

    async def mark_submitted(
        self, tx: Transaction, job_id: str, scheduled_at: datetime, *, now: datetime
    ) -> bool:
        """A pending run was handed to the coordinator."""
        changed = await tx.execute(
            "UPDATE job_runs SET status = ?, submitted_at = ?"
            " WHERE job_id = ? AND scheduled_at = ? AND status = ?",
            (RunStatus.SUBMITTED, to_iso(now), job_id, to_iso(scheduled_at), RunStatus.PENDING),
        )
        return changed == 1

    async def pending_runs(self) -> builtins.list[JobRunRow]:
        """Runs recorded but not confirmed submitted (a crash or a failed submit)."""
        rows = await self._store.fetchall(
            "SELECT * FROM job_runs WHERE status = ? ORDER BY scheduled_at, id",
            (RunStatus.PENDING,),
        )
        return [_run(row) for row in rows]

    async def runs(self, job_id: str, limit: int = 100) -> builtins.list[JobRunRow]:
        """A job's newest runs (any status), newest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM job_runs WHERE job_id = ? ORDER BY scheduled_at DESC LIMIT ?",
            (job_id, limit),
        )
        return [_run(row) for row in rows]

    async def count_runs(self, job_id: str | None = None) -> dict[RunStatus, int]:
        """How many run rows in each status (of one job when given)."""
        sql = "SELECT status, COUNT(*) AS n FROM job_runs"
        params: tuple[str, ...] = ()
        if job_id is not None:
            sql, params = sql + " WHERE job_id = ?", (job_id,)
        rows = await self._store.fetchall(sql + " GROUP BY status", params)
        counts = dict.fromkeys(RunStatus, 0)
        for row in rows:
            counts[RunStatus(row["status"])] = int(row["n"])
        return counts

    async def last_run(self, job_id: str) -> JobRunRow | None:
        """The newest run that was made (pending or submitted), if any."""
        row = await self._store.fetchone(
            "SELECT * FROM job_runs WHERE job_id = ? AND status != ?"
            " ORDER BY scheduled_at DESC LIMIT 1",
            (job_id, RunStatus.SKIPPED),
        )
        return None if row is None else _run(row)

    async def skipped_since(self, job_id: str, since: datetime) -> int:
        """How many of a job's instants at or after ``since`` were skipped."""
        value = await self._store.scalar(
            "SELECT COUNT(*) FROM job_runs WHERE job_id = ? AND status = ? AND scheduled_at >= ?",
            (job_id, RunStatus.SKIPPED, to_iso(since)),
        )
        return int(value or 0)
