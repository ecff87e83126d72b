"""The reminders feature's pure parts: recurring splits, options, ids, the message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.errors import Refusal
from agents.intents import Conversation, Scheduled
from agents.reminders import (
    ReminderDueIntent,
    due_message,
    exact_command,
    reminder_number,
    split_recurring,
    when_options,
)
from agents.when import Ambiguous, Past, Resolved, resolve_when

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Mon 07:00 in Berlin
HOME = Conversation(platform="console", chat_id="local", user_id="op")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every monday 9am review the pipeline", ("every monday 9am", "review the pipeline")),
        ("remind me every day at 8 to check the inbox", ("every day at 8", "check the inbox")),
        (
            "remind me to pay rent every 1st of the month at 9",
            ("every 1st of the month at 9", "pay rent"),
        ),
        ("weekdays at 9 stand-up", ("weekdays at 9", "stand-up")),
        ("on friday at 3 send the proposal", None),  # a one-off, not "every friday"
        ("tomorrow 9am call Bob", None),
        ("every monday 9am", None),  # nothing to remind of
    ],
)
def test_split_recurring(text: str, expected: tuple[str, str] | None) -> None:
    assert split_recurring(text) == expected


def test_a_recurring_form_with_a_bad_time_is_refused() -> None:
    with pytest.raises(Refusal, match="25"):
        split_recurring("every day at 25:00 stretch")


def test_options_carry_exact_commands() -> None:
    ambiguous = resolve_when("at 3", now=NOW, tz="Europe/Berlin")
    assert isinstance(ambiguous, Ambiguous)
    assert [o.command for o in when_options(ambiguous, "call the bank")] == [
        "/remind at 2026-11-23T15:00+01:00 call the bank",
        "/remind at 2026-11-24T03:00+01:00 call the bank",
    ]
    past = resolve_when("today 6:30", now=NOW, tz="Europe/Berlin")
    assert isinstance(past, Past)
    [option] = when_options(past, "stretch")
    assert (option.label, option.command) == (
        "Tue 24 Nov 06:30 CET",
        "/remind at 2026-11-24T06:30+01:00 stretch",
    )
    resolved = resolve_when("tomorrow 9am", now=NOW, tz="Europe/Berlin")
    assert isinstance(resolved, Resolved)
    assert exact_command(resolved.at, "x") == "/remind at 2026-11-24T09:00+01:00 x"


def test_reminder_numbers() -> None:
    assert reminder_number("reminder:4") == 4
    assert reminder_number("reminder:4.snooze") == 4
    assert reminder_number("digest.daily") is None


def _due(**scheduled: object) -> ReminderDueIntent:
    return ReminderDueIntent(
        conversation=HOME,
        idempotency_key="job:reminder:4@x",
        number=4,
        text="send the proposal",
        scheduled=Scheduled(job_id="reminder:4", **scheduled),  # type: ignore[arg-type]  # test data
    )


def test_the_message_offers_snooze_and_says_when_late() -> None:
    on_time = due_message(_due(scheduled_at=NOW), "Europe/Berlin")
    assert on_time.text == "⏰ Reminder #4: send the proposal"
    assert [o.command for o in on_time.options] == [
        "/remind snooze 4 1h",
        "/remind snooze 4 1d",
    ]
    late = due_message(_due(scheduled_at=NOW, late=True), "Europe/Berlin")
    assert late.text.endswith(
        "(Late: it was due Mon 23 Nov 07:00 CET; soloops was not running then.)"
    )
