"""The schedule grammar, DST-safe time math, misfire plans and the /schedule renderer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.schedules import (
    ALL_CAP,
    GRAMMAR,
    LATE_AFTER,
    SCAN_LIMIT,
    JobLine,
    MisfireKind,
    ScheduleError,
    fires_between,
    format_duration,
    next_fire,
    parse_compiled,
    parse_cron,
    parse_duration,
    parse_misfire,
    parse_schedule,
    plan_runs,
    render_jobs,
    resolve_local,
    zone,
)

BERLIN = zone("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "compiled"),
    [
        ("every day at 8:00", "cron 0 8 * * *"),
        ("every day at 8am", "cron 0 8 * * *"),
        ("Every  Day at 8 PM", "cron 0 20 * * *"),
        ("daily at 18:30", "cron 30 18 * * *"),
        ("daily at 12am", "cron 0 0 * * *"),
        ("daily at 12pm", "cron 0 12 * * *"),
        ("every monday 9am", "cron 0 9 * * 1"),
        ("every mon and thu at 9:30", "cron 30 9 * * 1,4"),
        ("every tuesday, thursday and saturday at 7pm", "cron 0 19 * * 2,4,6"),
        ("every sunday at 10", "cron 0 10 * * 0"),
        ("weekdays at 9", "cron 0 9 * * 1-5"),
        ("every weekday at 9:15", "cron 15 9 * * 1-5"),
        ("weekends at 10", "cron 0 10 * * 0,6"),
        ("every hour", "cron 0 * * * *"),
        ("hourly", "cron 0 * * * *"),
        ("every 6 hours", "cron 0 */6 * * *"),
        ("every minute", "cron * * * * *"),
        ("every 15 minutes", "cron */15 * * * *"),
        ("every 1st of the month", "cron 0 0 1 * *"),
        ("every 1st of the month at 9", "cron 0 9 1 * *"),
        ("every 2nd of each month at 17:45", "cron 45 17 2 * *"),
        ("every month on the 15th", "cron 0 0 15 * *"),
        ("monthly on the 28th at 8am", "cron 0 8 28 * *"),
        ("0 8 * * *", "cron 0 8 * * *"),
        ("*/10 9-17 * * mon-fri", "cron */10 9-17 * * mon-fri"),
        ("2026-05-01T09:00+02:00", "at 2026-05-01T07:00:00+00:00"),
        ("2026-05-01T07:00Z", "at 2026-05-01T07:00:00+00:00"),
    ],
)
def test_grammar_compiles(text: str, compiled: str) -> None:
    assert parse_schedule(text).compiled == compiled


def test_every_grammar_example_parses() -> None:
    for rule in GRAMMAR:
        assert rule.pattern.match(rule.example), rule.example
        assert parse_schedule(rule.example).cron is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sometimes", "every day at 8:00 · daily at 18:30"),
        ("", "a schedule is needed"),
        ("every day at 25:00", "no valid time of day"),
        ("every day at 8:75", "no valid time of day"),
        ("every day at 13pm", "the hour is 1-12"),
        ("every 7 minutes", "divides the hour"),
        ("every 5 hours", "divides the day"),
        ("every 32nd of the month", "1-31"),
        ("every funday at 9", "I can't read"),
        ("2026-05-01T09:00", "needs a UTC offset"),
        ("2026-13-01T09:00Z", "not a valid date"),
        ("0 0 31 2 *", "never runs"),
        ("61 * * * *", "out of range 0-59"),
        ("0 8 * * 8", "out of range 0-7"),
        ("0 8 * foo *", "not a valid month"),
        ("0 8-6 * * *", "low to high"),
        ("*/0 * * * *", "positive number"),
        ("0 8 * *", "I can't read"),
    ],
)
def test_bad_schedules_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)
    assert says in str(caught.value)


def test_unknown_text_lists_the_accepted_forms() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("whenever you like")
    message = str(caught.value)
    for form in ("0 8 * * *", "every monday 9am", "weekdays at 9", "every 1st of the month"):
        assert form in message


def test_cron_details() -> None:
    cron = parse_cron("0 9 * * 7")
    assert cron.weekdays == frozenset({0})  # 7 is Sunday too
    both = parse_cron("0 9 1 * mon")  # day and weekday restricted: either matches
    assert both.matches(datetime(2026, 6, 1).date())  # the 1st (a Monday anyway)
    assert both.matches(datetime(2026, 6, 8).date())  # a Monday
    assert both.matches(datetime(2026, 7, 1).date())  # the 1st, a Wednesday
    assert not both.matches(datetime(2026, 7, 2).date())
    assert parse_cron("0 0 29 feb *").months == frozenset({2})


def test_compiled_form_round_trips() -> None:
    for text in ("every mon and thu at 9:30", "2026-05-01T09:00+02:00"):
        schedule = parse_schedule(text)
        again = parse_compiled(schedule.compiled, schedule.text)
        assert again == schedule
    with pytest.raises(ScheduleError):
        parse_compiled("rrule FREQ=DAILY")


def test_unknown_time_zone() -> None:
    with pytest.raises(ScheduleError, match="IANA name like Europe/Berlin"):
        zone("Mars/Olympus")


# --- time math -------------------------------------------------------------------------


def daily_runs(text: str, start: datetime, count: int) -> list[datetime]:
    schedule, runs, after = parse_schedule(text), [], start
    for _ in range(count):
        nxt = next_fire(schedule, BERLIN, after)
        assert nxt is not None
        runs.append(nxt)
        after = nxt
    return runs


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 28, 7), utc(2026, 3, 29, 6), utc(2026, 3, 30, 6), utc(2026, 3, 31, 6)],
            id="spring",
        ),
        pytest.param(
            utc(2026, 10, 23, 12),
            [
                utc(2026, 10, 24, 6),
                utc(2026, 10, 25, 7),
                utc(2026, 10, 26, 7),
                utc(2026, 10, 27, 7),
            ],
            id="autumn",
        ),
    ],
)
def test_daily_0800_berlin_across_a_dst_change(start: datetime, expected: list[datetime]) -> None:
    runs = daily_runs("every day at 8:00", start, 4)
    assert runs == expected
    assert all(r.astimezone(BERLIN).hour == 8 for r in runs)


def test_a_time_in_the_spring_gap_runs_at_the_first_valid_instant_after() -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    runs = daily_runs("30 2 * * *", utc(2026, 3, 28, 12), 2)
    assert runs[0] == utc(2026, 3, 29, 1)  # 03:00 CEST
    assert runs[0].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    assert runs[1].astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"


def test_a_time_that_exists_twice_runs_once_at_the_first() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    runs = daily_runs("30 2 * * *", utc(2026, 10, 24, 12), 2)
    assert runs[0] == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first
    assert runs[1] == utc(2026, 10, 26, 1, 30)


def test_hourly_job_runs_once_per_wall_clock_hour_through_both_changes() -> None:
    schedule = parse_schedule("every hour")
    spring = fires_between(schedule, BERLIN, utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    # Local 01:00 CET, then 03:00 CEST (02:00 does not exist, maps onto 03:00), 04:00, 05:00.
    assert [r.astimezone(BERLIN).hour for r in spring] == [1, 3, 4, 5]
    autumn = fires_between(schedule, BERLIN, utc(2026, 10, 24, 22), utc(2026, 10, 25, 3))
    # 01:00, 02:00 (first), 03:00, 04:00: the repeated 02:00 does not run twice.
    assert [r.astimezone(BERLIN).hour for r in autumn] == [1, 2, 3, 4]
    assert len(set(autumn)) == len(autumn)


def test_resolve_local_gap_and_fold() -> None:
    assert resolve_local(datetime(2026, 3, 29, 2, 15), BERLIN) == utc(2026, 3, 29, 1)
    assert resolve_local(datetime(2026, 10, 25, 2, 15), BERLIN) == utc(2026, 10, 25, 0, 15)
    assert resolve_local(datetime(2026, 7, 1, 8), BERLIN) == utc(2026, 7, 1, 6)


def test_one_off_and_weekly_next_fire() -> None:
    one_off = parse_schedule("2026-05-01T09:00+02:00")
    assert next_fire(one_off, BERLIN, utc(2026, 4, 1)) == utc(2026, 5, 1, 7)
    assert next_fire(one_off, BERLIN, utc(2026, 5, 1, 7)) is None
    weekly = parse_schedule("every mon and thu at 9:30")
    # 2026-06-02 is a Tuesday: next is Thursday the 4th, then Monday the 8th.
    assert daily_runs("every mon and thu at 9:30", utc(2026, 6, 2), 2) == [
        utc(2026, 6, 4, 7, 30),
        utc(2026, 6, 8, 7, 30),
    ]
    assert next_fire(weekly, zone("UTC"), utc(2026, 6, 2)) == utc(2026, 6, 4, 9, 30)


def test_monthly_on_the_31st_skips_short_months() -> None:
    runs = daily_runs("every 31st of the month at 9", utc(2026, 1, 31, 12), 3)
    assert [r.astimezone(BERLIN).date().isoformat() for r in runs] == [
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
    ]


# --- durations and misfire policies ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("2d", timedelta(days=2)),
        ("36h", timedelta(hours=36)),
        ("20s", timedelta(seconds=20)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1w", timedelta(weeks=1)),
        ("2 days", timedelta(days=2)),
        ("3 Hours", timedelta(hours=3)),
    ],
)
def test_durations(text: str, span: timedelta) -> None:
    assert parse_duration(text) == span
    assert parse_duration(format_duration(span)) == span


@pytest.mark.parametrize("text", ["", "2", "2x", "h", "0s", "1h 30", "abc", "-2h", "2h later"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ScheduleError, match="like 2d, 36h, 90m, 1h30m or 20s"):
        parse_duration(text)


def test_misfire_policies() -> None:
    assert parse_misfire("once").kind is MisfireKind.ONCE
    assert parse_misfire("ALL").kind is MisfireKind.ALL
    skip = parse_misfire("skip-if-older-than 2h")
    assert skip.max_age == timedelta(hours=2)
    assert skip.text == "skip-if-older-than 2h"
    for bad in ("twice", "skip-if-older-than", "skip-if-older-than soon"):
        with pytest.raises(ScheduleError):
            parse_misfire(bad)


# --- plans -----------------------------------------------------------------------------

DAILY = parse_schedule("every day at 8:00")


def test_plan_on_time_run_is_not_late() -> None:
    plan = plan_runs(DAILY, BERLIN, parse_misfire("once"), utc(2026, 6, 1, 6), utc(2026, 6, 1, 6))
    assert [(r.scheduled_at, r.late, r.missed_since) for r in plan.runs] == [
        (utc(2026, 6, 1, 6), False, None)
    ]
    assert plan.handled_until == utc(2026, 6, 1, 6)
    assert plan.next_run_at == utc(2026, 6, 2, 6)
    within = plan_runs(
        DAILY, BERLIN, parse_misfire("once"), utc(2026, 6, 1, 6), utc(2026, 6, 1, 6) + LATE_AFTER
    )
    assert not within.runs[0].late


def test_plan_nothing_due_keeps_the_next_run() -> None:
    plan = plan_runs(DAILY, BERLIN, parse_misfire("once"), utc(2026, 6, 1, 6), utc(2026, 6, 1, 5))
    assert plan.runs == () and plan.skipped == () and plan.handled_until is None
    assert plan.next_run_at == utc(2026, 6, 1, 6)


def test_plan_once_after_three_days_is_one_late_run_saying_since_when() -> None:
    plan = plan_runs(DAILY, BERLIN, parse_misfire("once"), utc(2026, 6, 1, 6), utc(2026, 6, 3, 9))
    (run,) = plan.runs
    assert run.scheduled_at == utc(2026, 6, 3, 6)
    assert run.late and run.missed_since == utc(2026, 6, 1, 6) and run.coalesced == 2
    assert plan.skipped == ()
    assert plan.next_run_at == utc(2026, 6, 4, 6)


def test_plan_all_runs_each_missed_instant() -> None:
    plan = plan_runs(DAILY, BERLIN, parse_misfire("all"), utc(2026, 6, 1, 6), utc(2026, 6, 3, 9))
    assert [r.scheduled_at for r in plan.runs] == [utc(2026, 6, d, 6) for d in (1, 2, 3)]
    assert all(r.late and r.missed_since == r.scheduled_at for r in plan.runs)


def test_plan_all_is_capped_and_says_so() -> None:
    start = utc(2026, 1, 1, 7)
    now = start + timedelta(days=ALL_CAP + 19, hours=1)
    plan = plan_runs(DAILY, BERLIN, parse_misfire("all"), start, now)
    assert len(plan.runs) == ALL_CAP
    assert len(plan.skipped) == 20
    assert all("cap of 100" in s.reason for s in plan.skipped)
    assert plan.skipped[-1].scheduled_at < plan.runs[0].scheduled_at


def test_plan_skip_if_older_than() -> None:
    policy = parse_misfire("skip-if-older-than 2h")
    # Down from 07:00 to 11:00 local: the 08:00 run is 3 h old, skipped.
    plan = plan_runs(DAILY, BERLIN, policy, utc(2026, 6, 1, 6), utc(2026, 6, 1, 9))
    assert plan.runs == ()
    assert [(s.scheduled_at, s.reason) for s in plan.skipped] == [
        (utc(2026, 6, 1, 6), "older than 2h")
    ]
    assert plan.handled_until == utc(2026, 6, 1, 6) and plan.next_run_at == utc(2026, 6, 2, 6)
    # Every 15 minutes, down 3 h: the older ones are skipped, the last 2 h run.
    quarter = parse_schedule("every 15 minutes")
    plan = plan_runs(quarter, BERLIN, policy, utc(2026, 6, 1, 6), utc(2026, 6, 1, 9))
    assert len(plan.skipped) == 4 and len(plan.runs) == 9
    assert all(utc(2026, 6, 1, 9) - r.scheduled_at <= timedelta(hours=2) for r in plan.runs)


def test_plan_for_a_one_off_ends_the_job() -> None:
    once = parse_schedule("2026-06-01T08:00+02:00")
    plan = plan_runs(once, BERLIN, parse_misfire("once"), utc(2026, 6, 1, 6), utc(2026, 6, 2))
    assert [r.scheduled_at for r in plan.runs] == [utc(2026, 6, 1, 6)]
    assert plan.runs[0].late and plan.next_run_at is None


def test_plan_after_a_very_long_downtime_is_bounded() -> None:
    minutely = parse_schedule("every minute")
    plan = plan_runs(minutely, BERLIN, parse_misfire("once"), utc(2026, 1, 1), utc(2026, 2, 1))
    (run,) = plan.runs
    assert plan.truncated and run.coalesced == SCAN_LIMIT - 1
    assert run.scheduled_at == utc(2026, 2, 1)


# --- rendering -------------------------------------------------------------------------


def test_render_jobs_shows_local_and_utc_state_and_marks() -> None:
    text = render_jobs(
        [
            JobLine(
                id="digest.daily",
                what="digest",
                schedule="every day at 8:00",
                timezone="Europe/Berlin",
                state="active",
                next_run_at=utc(2026, 3, 30, 6),
                last_run_at=utc(2026, 3, 29, 6),
                last_late=True,
                skipped=2,
            ),
            JobLine("reminder:12", "remind", "2026-05-01T09:00+02:00", "UTC", "paused", None, None),
        ]
    )
    first, second = text.splitlines()
    assert first == (
        "digest.daily · digest · 'every day at 8:00' (Europe/Berlin)"
        " · next 2026-03-30 08:00 CEST (06:00 UTC) · active"
        " · last 2026-03-29 08:00 CEST, late · skipped 2"
    )
    assert second.startswith("reminder:12 · remind") and "paused · never run" in second
    assert render_jobs([]) == "No scheduled jobs."
