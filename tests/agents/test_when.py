from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from agents.when import (
    Ambiguous,
    Past,
    ReminderRequest,
    Resolved,
    Unparseable,
    local_text,
    resolve_when,
    split_reminder,
)

TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)
# Saturday 24 Oct 2026, 10:00 CEST; clocks go back to CET on Sunday 25 Oct at 03:00.
NOW = datetime(2026, 10, 24, 10, 0, tzinfo=BERLIN)


def resolved(text: str, now: datetime = NOW) -> Resolved:
    result = resolve_when(text, now=now, tz=TZ)
    assert isinstance(result, Resolved), result
    return result


def test_tomorrow_9am_across_the_dst_change() -> None:
    got = resolved("tomorrow 9am")
    assert got.at.astimezone(UTC) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
    assert got.text == "Sun 25 Oct 09:00 CET"


def test_minutes_and_hours_count_real_time_across_the_change() -> None:
    night = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)  # 02:30 CEST, the first one
    got = resolved("in 2 hours", now=night)
    assert got.at.astimezone(UTC) - night.astimezone(UTC) == (
        datetime(2026, 1, 1, 2, tzinfo=UTC) - datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert got.text == "Sun 25 Oct 03:30 CET"
    assert resolved("in 20 minutes").text == "Sat 24 Oct 10:20 CEST"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("next monday", "Mon 26 Oct 09:00 CET"),
        ("24 nov 15:00", "Tue 24 Nov 15:00 CET"),
        ("friday 15:00", "Fri 30 Oct 15:00 CET"),
        ("tomorrow at 9:30", "Sun 25 Oct 09:30 CET"),
        ("on saturday at 8am", "Sat 31 Oct 08:00 CET"),
        ("at 15", "Sat 24 Oct 15:00 CEST"),
        ("noon", "Sat 24 Oct 12:00 CEST"),
        ("tonight", "Sat 24 Oct 20:00 CEST"),
        ("in 2 days", "Mon 26 Oct 10:00 CET"),
        ("24 nov", "Tue 24 Nov 09:00 CET"),
    ],
)
def test_common_phrases(text: str, shown: str) -> None:
    assert resolved(text).text == shown


def test_a_bare_hour_is_asked_back_with_both_readings() -> None:
    result = resolve_when("on friday at 3", now=NOW, tz=TZ)
    assert isinstance(result, Ambiguous)
    assert [c.text for c in result.choices] == ["Fri 30 Oct 03:00 CET", "Fri 30 Oct 15:00 CET"]
    # Without a day: the next 15:00 today, or 03:00 tomorrow.
    alone = resolve_when("at 3", now=NOW, tz=TZ)
    assert isinstance(alone, Ambiguous)
    assert [c.text for c in alone.choices] == ["Sat 24 Oct 15:00 CEST", "Sun 25 Oct 03:00 CET"]


def test_a_weekday_that_is_today_is_asked_back() -> None:
    result = resolve_when("saturday 15:00", now=NOW, tz=TZ)
    assert isinstance(result, Ambiguous)
    assert [c.text for c in result.choices] == ["Sat 24 Oct 15:00 CEST", "Sat 31 Oct 15:00 CET"]


def test_a_time_passed_today_offers_tomorrow() -> None:
    for text in ("today 9am", "9am", "at 09:00"):
        result = resolve_when(text, now=NOW, tz=TZ)
        assert isinstance(result, Past), text
        assert result.suggestion is not None
        assert result.suggestion.text == "Sun 25 Oct 09:00 CET"
        assert "already passed" in result.message
    yesterday = resolve_when("yesterday", now=NOW, tz=TZ)
    assert isinstance(yesterday, Past) and yesterday.suggestion is None


def test_unparseable_says_how_to_write_a_time() -> None:
    for text in ("blah", "", "whenever"):
        result = resolve_when(text, now=NOW, tz=TZ)
        assert isinstance(result, Unparseable)
        assert "tomorrow 9am" in result.message


def test_a_skipped_wall_time_moves_forward() -> None:
    spring = datetime(2026, 3, 28, 10, 0, tzinfo=BERLIN)
    assert resolved("tomorrow 2:30", now=spring).text == "Sun 29 Mar 03:30 CEST"


def test_local_text() -> None:
    assert local_text(datetime(2026, 11, 6, 15, 0, tzinfo=BERLIN)) == "Fri 6 Nov 15:00 CET"


@pytest.mark.parametrize(
    ("text", "when", "what"),
    [
        ("remind me tomorrow 9am to call Bob", "tomorrow 9am", "call Bob"),
        ("/remind tomorrow 9am call Bob", "tomorrow 9am", "call Bob"),
        ("remind me on friday at 3 to send the proposal", "on friday at 3", "send the proposal"),
        ("in 20 minutes check the oven", "in 20 minutes", "check the oven"),
        ("remind me to call Bob tomorrow 9am", "tomorrow 9am", "call Bob"),
        (
            "/remind next monday 10:00 review the pipeline",
            "next monday 10:00",
            "review the pipeline",
        ),
    ],
)
def test_split_reminder(text: str, when: str, what: str) -> None:
    result = split_reminder(text, now=NOW, tz=TZ)
    assert isinstance(result, ReminderRequest)
    assert (result.when_text, result.what) == (when, what)
    assert result.when == resolve_when(when, now=NOW, tz=TZ)


def test_split_reminder_without_a_time() -> None:
    for text in ("/remind call Bob", "/remind", "remind me tomorrow"):
        result = split_reminder(text, now=NOW, tz=TZ)
        assert isinstance(result, Unparseable)
        assert "/remind tomorrow 9am call Bob" in result.message
