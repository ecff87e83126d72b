"""The digest feature's plain parts: job ids and specs, the late note, the day's end,
the /schedule argument builder."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.digest import digest_jobs, job_id, late_note
from agents.digest_port import end_of_day
from agents.intents import Conversation, Scheduled
from agents.schedule_cmd import schedule_args
from config import Settings

HOME = Conversation(platform="telegram", chat_id="-1001", user_id="42", thread_id="7")


def test_one_job_per_home_with_a_stable_id() -> None:
    settings = Settings(digest={"at": "7:30"})
    console = Conversation(platform="console", chat_id="local", user_id="operator")
    [topic, local] = digest_jobs(settings, (HOME, console))
    assert (topic.id, local.id) == ("digest.daily@telegram:-1001:7", "digest.daily@console:local")
    assert topic.schedule == "every day at 07:30" and topic.misfire == "once"
    assert topic.timezone is None  # the scheduler's default: SOLOOPS_TIMEZONE
    assert Conversation.model_validate(topic.payload["conversation"]) == HOME
    assert job_id(HOME) == topic.id


def test_the_late_note_says_when_it_was_due_and_what_it_folds() -> None:
    on_the_day = Scheduled(job_id="d", scheduled_at=datetime(2026, 6, 1, 6, tzinfo=UTC), late=True)
    assert late_note(on_the_day, "Europe/Berlin") == (
        "Late: this digest was due Mon 01 Jun 08:00; soloops was not running then."
    )
    days = Scheduled(
        job_id="d",
        scheduled_at=datetime(2026, 6, 3, 6, tzinfo=UTC),
        late=True,
        missed_since=datetime(2026, 6, 1, 6, tzinfo=UTC),
        coalesced=2,
    )
    assert "(runs missed since Mon 01 Jun 08:00, 2 folded into this one)" in late_note(
        days, "Europe/Berlin"
    )


def test_the_end_of_the_local_day_across_the_spring_change() -> None:
    now = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # 23:30 in Berlin, the 28th
    assert end_of_day(now, "Europe/Berlin") == datetime(2026, 3, 28, 23, tzinfo=UTC)
    # The 29th has 23 hours: its end is 22:00 UTC.
    assert end_of_day(now, "Europe/Berlin", 1) == datetime(2026, 3, 29, 22, tzinfo=UTC)


def test_schedule_arguments() -> None:
    assert schedule_args([]) == {}
    assert schedule_args(["Pause", "digest.daily@console:local"]) == {
        "verb": "pause",
        "job_id": "digest.daily@console:local",
    }
    with pytest.raises(ValueError, match="'stop' is not pause, resume or cancel"):
        schedule_args(["stop", "x"])
    with pytest.raises(ValueError, match="cancel takes one job id"):
        schedule_args(["cancel"])
