"""Schedules: when jobs fire, and what runs after soloops was down. No I/O.

The grammar (cron, plain language, one-off instants, misfire policies) lives in
:mod:`agents.schedule_grammar`; its names are re-exported here.

Times are wall-clock times in the job's IANA time zone, so a daily 08:00 job stays at
08:00 local across daylight-saving changes. A local time that does not exist (the
spring gap, 02:30 on the night clocks jump from 02:00 to 03:00) runs at the first
valid instant after it (03:00); a local time that exists twice (the autumn overlap)
runs once, at its first occurrence.

Missed runs (soloops was down) follow the job's :class:`MisfirePolicy`; :func:`plan_runs`
decides, from the first pending instant and now, what runs and what is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Final
from zoneinfo import ZoneInfo

from agents.schedule_grammar import (
    ACCEPTED_FORMS,
    GRAMMAR,
    Cron,
    MisfireKind,
    MisfirePolicy,
    Rule,
    Schedule,
    ScheduleError,
    compile_plain,
    parse_compiled,
    parse_cron,
    parse_duration,
    parse_misfire,
    parse_schedule,
    zone,
)
from config.durations import format_duration

__all__ = [
    "ACCEPTED_FORMS",
    "ALL_CAP",
    "GRAMMAR",
    "LATE_AFTER",
    "SCAN_LIMIT",
    "Cron",
    "JobLine",
    "MisfireKind",
    "MisfirePolicy",
    "Plan",
    "PlannedRun",
    "Rule",
    "Schedule",
    "ScheduleError",
    "Skip",
    "compile_plain",
    "fires_between",
    "format_duration",
    "next_fire",
    "parse_compiled",
    "parse_cron",
    "parse_duration",
    "parse_misfire",
    "parse_schedule",
    "plan_runs",
    "render_jobs",
    "resolve_local",
    "zone",
]


# --- time math -------------------------------------------------------------------------

#: How far the day scan looks before concluding a cron never runs (covers Feb 29).
_MAX_DAYS: Final = 366 * 5
_MINUTE: Final = timedelta(minutes=1)


def resolve_local(naive: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of local wall-clock time ``naive`` in ``tz``.

    A time in the spring gap maps to the first wall-clock minute after it that exists;
    a time in the autumn overlap maps to its first occurrence (``fold=0``).
    """
    probe = naive
    # A gap is at most a day long (Samoa skipped 2011-12-30); minute steps find its end.
    for _ in range(24 * 60 + 1):
        instant = probe.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == probe:
            return instant
        probe = probe.replace(second=0, microsecond=0) + _MINUTE
    raise ScheduleError(f"{naive} has no instant in {tz.key}")  # pragma: no cover


def _day_instants(cron: Cron, tz: ZoneInfo, day: date) -> list[datetime]:
    if not cron.matches(day):
        return []
    return sorted({resolve_local(datetime.combine(day, at), tz) for at in cron.times()})


def _ascending(schedule: Schedule, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    if schedule.at is not None:
        if schedule.at > after:
            yield schedule.at
        return
    assert schedule.cron is not None
    # Start a day early: a day's instants can begin before its local midnight in UTC.
    day = after.astimezone(tz).date() - timedelta(days=1)
    for _ in range(_MAX_DAYS):
        for instant in _day_instants(schedule.cron, tz, day):
            if instant > after:
                yield instant
        day += timedelta(days=1)


def _descending(
    schedule: Schedule, tz: ZoneInfo, upto: datetime, floor: datetime
) -> Iterator[datetime]:
    """Instants in ``(floor, upto]``, newest first."""
    if schedule.at is not None:
        if floor < schedule.at <= upto:
            yield schedule.at
        return
    assert schedule.cron is not None
    day = upto.astimezone(tz).date() + timedelta(days=1)
    last_day = floor.astimezone(tz).date() - timedelta(days=1)
    while day >= last_day:
        for instant in reversed(_day_instants(schedule.cron, tz, day)):
            if floor < instant <= upto:
                yield instant
        day -= timedelta(days=1)


def next_fire(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first run strictly after ``after`` as an aware UTC datetime, or None."""
    return next(_ascending(schedule, tz, after), None)


def fires_between(
    schedule: Schedule, tz: ZoneInfo, after: datetime, until: datetime, limit: int = 1000
) -> list[datetime]:
    """Runs in ``(after, until]``, oldest first, at most ``limit`` (the oldest ones)."""
    found: list[datetime] = []
    for instant in _ascending(schedule, tz, after):
        if instant > until or len(found) >= limit:
            break
        found.append(instant)
    return found


# --- misfire plans ---------------------------------------------------------------------

#: A run less than this behind its instant is on time (timer and start-up jitter).
LATE_AFTER: Final = timedelta(minutes=1)
#: ``all`` runs at most this many missed instants; older ones are skipped, and said so.
ALL_CAP: Final = 100
#: Missed instants looked at per plan; beyond it the plan says "more" (``truncated``).
SCAN_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One run to make now.

    ``missed_since`` is the oldest missed instant this run answers for (None when on
    time); ``coalesced`` counts the other missed instants folded into it (policy once).
    """

    scheduled_at: datetime
    late: bool
    missed_since: datetime | None = None
    coalesced: int = 0


@dataclass(frozen=True, slots=True)
class Skip:
    """A missed instant that will not run, and why."""

    scheduled_at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now for one job.

    ``handled_until`` is the newest instant dealt with (the job's new last run);
    ``next_run_at`` the first instant after it (None: a one-off that is done);
    ``truncated``: more than :data:`SCAN_LIMIT` instants were missed, and the oldest
    were not looked at one by one.
    """

    runs: tuple[PlannedRun, ...]
    skipped: tuple[Skip, ...]
    handled_until: datetime | None
    next_run_at: datetime | None
    truncated: bool = False


def plan_runs(
    schedule: Schedule, tz: ZoneInfo, policy: MisfirePolicy, pending_from: datetime, now: datetime
) -> Plan:
    """Decide the runs due at ``now`` for a job whose first unhandled instant is
    ``pending_from`` (its stored next run).

    ``once`` makes one run for the newest missed instant, late and saying since when;
    ``all`` runs each missed instant (the newest :data:`ALL_CAP`; older ones skipped);
    ``skip-if-older-than`` skips instants older than its age and runs the rest.
    """
    floor = pending_from - timedelta(microseconds=1)
    newest_first = list(islice(_descending(schedule, tz, now, floor), SCAN_LIMIT + 1))
    truncated = len(newest_first) > SCAN_LIMIT
    missed = newest_first[:SCAN_LIMIT][::-1]
    if not missed:
        return Plan((), (), None, next_fire(schedule, tz, max(now, floor)))
    newest = missed[-1]
    following = next_fire(schedule, tz, newest)

    def late(instant: datetime) -> bool:
        return now - instant > LATE_AFTER

    if policy.kind is MisfireKind.ONCE:
        folded = len(missed) - 1
        run = PlannedRun(
            newest,
            late=late(newest) or folded > 0,
            missed_since=missed[0] if late(newest) or folded else None,
            coalesced=folded,
        )
        return Plan((run,), (), newest, following, truncated)
    skipped: list[Skip] = []
    keep = missed
    if policy.kind is MisfireKind.SKIP_OLDER:
        assert policy.max_age is not None
        age = format_duration(policy.max_age)
        skipped = [Skip(t, f"older than {age}") for t in missed if now - t > policy.max_age]
        keep = [t for t in missed if now - t <= policy.max_age]
    if len(keep) > ALL_CAP:
        skipped += [Skip(t, f"over the cap of {ALL_CAP} catch-up runs") for t in keep[:-ALL_CAP]]
        keep = keep[-ALL_CAP:]
    runs = tuple(PlannedRun(t, late(t), t if late(t) else None) for t in keep)
    ordered = tuple(sorted(skipped, key=lambda s: s.scheduled_at))
    return Plan(runs, ordered, newest, following, truncated)


# --- /schedule -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobLine:
    """What ``/schedule`` shows of one job."""

    id: str
    what: str
    schedule: str
    timezone: str
    state: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_late: bool = False
    skipped: int = 0


def _when(instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    utc = instant.astimezone(UTC)
    utc_text = utc.strftime("%H:%M UTC")
    if utc.date() != local.date():
        utc_text = utc.strftime("%Y-%m-%d %H:%M UTC")
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc_text})"


def render_jobs(lines: Sequence[JobLine]) -> str:
    """The ``/schedule`` listing: one line per job, next run in local time and UTC."""
    if not lines:
        return "No scheduled jobs."
    out: list[str] = []
    for line in lines:
        tz = zone(line.timezone)
        parts = [line.id, line.what, f"{line.schedule!r} ({line.timezone})"]
        parts.append(f"next {_when(line.next_run_at, tz)}" if line.next_run_at else "next —")
        parts.append(line.state)
        if line.last_run_at is not None:
            mark = ", late" if line.last_late else ""
            parts.append(f"last {line.last_run_at.astimezone(tz):%Y-%m-%d %H:%M %Z}{mark}")
        else:
            parts.append("never run")
        if line.skipped:
            parts.append(f"skipped {line.skipped}")
        out.append(" · ".join(parts))
    return "\n".join(out)
