"""Reminders end to end on the console runtime, time moved by a ManualClock."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.reminders import RemindersAgent
from bot.console import ConsoleSender
from bot.runtime import Runtime, open_runtime
from config import Settings
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from tests.conftest import Chat

BERLIN = "Europe/Berlin"
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Mon 23 Nov, 07:00 in Berlin


@asynccontextmanager
async def _open(
    settings: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[tuple[Runtime, Chat]]:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], clock=clock, embedder=embedder
    ) as runtime:
        yield runtime, Chat(runtime, out)


async def _tick(runtime: Runtime, chat: Chat, clock: ManualClock, at: datetime) -> str:
    """Move the clock to ``at``, run what is due, return what was printed meanwhile."""
    start = len(chat.out.getvalue())
    clock.set(at)
    await runtime.scheduler.run_due()
    await runtime.settle()
    return chat.out.getvalue()[start:]


def _jobs(settings: Settings) -> list[tuple[str, str]]:
    with sqlite3.connect(settings.database_path) as conn:
        rows = conn.execute("SELECT id, state FROM jobs WHERE owner = 'reminders' ORDER BY id")
        return [(str(r[0]), str(r[1])) for r in rows]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def berlin(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", timezone=BERLIN, digest={"enabled": False})


async def test_a_reminder_states_its_local_time_and_arrives_once(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        said = await chat.say("/remind tomorrow 9am call Bob")
        assert said == "Reminder #1 set for Tue 24 Nov 09:00 CET: call Bob\n"
        assert await _tick(runtime, chat, clock, datetime(2026, 11, 24, 7, 59, tzinfo=UTC)) == ""
        fired = await _tick(runtime, chat, clock, datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
        assert fired.startswith("⏰ Reminder #1: call Bob\n")
        assert "Late" not in fired
        assert "/remind snooze 1 1h" in fired and "/remind snooze 1 1d" in fired
        assert await _tick(runtime, chat, clock, datetime(2026, 11, 25, 8, 0, tzinfo=UTC)) == ""
        assert "No reminders set" in await chat.say("/reminders")
    assert _jobs(berlin) == [("reminder:1", "done")]


async def test_a_reminder_fires_at_local_time_across_the_dst_change(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    # Sat 24 Oct 2026, 12:00 CEST; clocks go back at 03:00 CEST on Sun 25 Oct.
    clock = ManualClock(datetime(2026, 10, 24, 10, 0, tzinfo=UTC))
    settings = Settings(home=tmp_path / "home", timezone=BERLIN, digest={"enabled": False})
    async with _open(settings, clock, embedder) as (runtime, chat):
        said = await chat.say("/remind tomorrow 9am water the plants")
        assert said == "Reminder #1 set for Sun 25 Oct 09:00 CET: water the plants\n"
        # 09:00 CEST would be 07:00 UTC; 09:00 CET (after the change) is 08:00 UTC.
        assert await _tick(runtime, chat, clock, datetime(2026, 10, 25, 7, 0, tzinfo=UTC)) == ""
        fired = await _tick(runtime, chat, clock, datetime(2026, 10, 25, 8, 0, tzinfo=UTC))
        assert fired.startswith("⏰ Reminder #1: water the plants\n")


async def test_a_reminder_missed_while_down_is_delivered_late_once(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (_, chat):
        assert "Tue 24 Nov 09:00 CET" in await chat.say("/remind tomorrow 9am call Bob")
    clock.set(datetime(2026, 11, 24, 11, 30, tzinfo=UTC))  # down over 09:00 Berlin
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await runtime.settle()
        late = chat.out.getvalue()
        assert late.startswith("⏰ Reminder #1: call Bob\n")
        assert "(Late: it was due Tue 24 Nov 09:00 CET; soloops was not running then.)" in late
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await runtime.settle()
        assert chat.out.getvalue() == ""  # delivered once, not again at the next start
    with sqlite3.connect(berlin.database_path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM tasks WHERE kind = 'reminder_due'").fetchone()
    assert count[0] == 1


async def test_a_weekly_reminder_fires_each_monday_at_nine_local(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        said = await chat.say("/remind every monday 9am review the pipeline")
        assert said == (
            "Reminder #1 set: every monday 9am (next Mon 23 Nov 09:00 CET): review the pipeline\n"
        )
        fired: list[datetime] = []
        moment = START
        while moment < datetime(2026, 12, 15, tzinfo=UTC):
            moment += timedelta(hours=2)
            if "⏰ Reminder #1: review the pipeline" in await _tick(runtime, chat, clock, moment):
                fired.append(moment)
        assert fired == [datetime(2026, 11, d, 8, 0, tzinfo=UTC) for d in (23, 30)] + [
            datetime(2026, 12, d, 8, 0, tzinfo=UTC) for d in (7, 14)
        ]
        listed = await chat.say("/reminders")
        assert listed == "#1 every monday 9am, next Mon 21 Dec 09:00 CET: review the pipeline\n"


async def test_an_ambiguous_time_is_asked_back_and_an_option_sets_it(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (_, chat):
        asked = await chat.say("/remind at 3 call the bank")
        assert asked.startswith("'at 3': 15:00 or 03:00?\n")
        assert "1. Mon 23 Nov 15:00 CET: /remind at 2026-11-23T15:00+01:00 call the bank" in asked
        assert "2. Tue 24 Nov 03:00 CET: /remind at 2026-11-24T03:00+01:00 call the bank" in asked
        assert _jobs(berlin) == []
        assert await chat.say("1") == "Reminder #1 set for Mon 23 Nov 15:00 CET: call the bank\n"
        assert _jobs(berlin) == [("reminder:1", "active")]


async def test_free_text_is_routed_to_a_reminder(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (_, chat):
        asked = await chat.say("remind me on friday at 3 to send the proposal")
        assert asked.startswith("'on friday at 3': 03:00 or 15:00?\n")
        assert "/remind at 2026-11-27T15:00+01:00 send the proposal" in asked
        said = await chat.say("in 20 minutes check the oven")
        assert said == "Reminder #1 set for Mon 23 Nov 07:20 CET: check the oven\n"


async def test_a_past_time_offers_tomorrow(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (_, chat):
        asked = await chat.say("/remind today 6:30 stretch")
        assert asked.startswith("Mon 23 Nov 06:30 CET has already passed: Tue 24 Nov 06:30 CET")
        assert "1. Tue 24 Nov 06:30 CET: /remind at 2026-11-24T06:30+01:00 stretch" in asked
        assert _jobs(berlin) == []
        assert await chat.say("1") == "Reminder #1 set for Tue 24 Nov 06:30 CET: stretch\n"


async def test_an_unparseable_time_says_how_and_stores_nothing(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        said = await chat.say("/remind whenever the moon is blue")
        assert "I could not tell when" in said and "/remind tomorrow 9am call Bob" in said
        assert await chat.say("/remind at 2026-11-23T09:00 x") != ""  # no offset: refused
        assert await chat.say("/remind snooze 1 soon") != ""
        assert _jobs(berlin) == []
        refused = await runtime.store.fetchall(
            "SELECT COUNT(*) FROM events WHERE kind = 'task.refused'"
        )
        assert refused[0][0] == 3


async def test_cancel_and_ids_are_never_reused(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await chat.say("/remind tomorrow 9am call Bob")
        await chat.say("/remind tomorrow 10am call Ann")
        assert await chat.say("/remind cancel 2") == "Reminder #2 cancelled: call Ann\n"
        assert await chat.say("/remind cancel 2") == "Reminder #2 was already cancelled.\n"
        assert "There is no reminder #9" in await chat.say("/remind cancel 9")
        assert (await chat.say("/remind friday 9am invoice")).startswith("Reminder #3 set")
        assert await chat.say("/reminders") == (
            "#1 Tue 24 Nov 09:00 CET: call Bob\n#3 Fri 27 Nov 09:00 CET: invoice\n"
        )
        fired = await _tick(runtime, chat, clock, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
        assert "call Bob" in fired and "call Ann" not in fired


async def test_snooze_by_command_and_by_the_option_number(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await chat.say("/remind tomorrow 9am call Bob")
        fired = await _tick(runtime, chat, clock, datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
        assert "1. Snooze 1h: /remind snooze 1 1h" in fired
        assert await chat.say("1") == "Reminder #1 snoozed until Tue 24 Nov 10:00 CET.\n"
        assert await _tick(runtime, chat, clock, datetime(2026, 11, 24, 8, 59, tzinfo=UTC)) == ""
        again = await _tick(runtime, chat, clock, datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        assert again.startswith("⏰ Reminder #1: call Bob\n")
        said = await chat.say("/remind snooze 1 1d")
        assert said == "Reminder #1 snoozed until Wed 25 Nov 10:00 CET.\n"
        assert await chat.say("/reminders") == "#1 Wed 25 Nov 10:00 CET: call Bob\n"


async def test_a_weekly_reminder_snoozes_without_losing_its_schedule(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await chat.say("/remind every monday 9am review the pipeline")
        await _tick(runtime, chat, clock, datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
        assert await chat.say("/remind snooze 1 2h") == (
            "Reminder #1 snoozed until Mon 23 Nov 11:00 CET.\n"
        )
        assert await chat.say("/reminders") == (
            "#1 Mon 23 Nov 11:00 CET (snoozed): review the pipeline\n"
            "#1 every monday 9am, next Mon 30 Nov 09:00 CET: review the pipeline\n"
        )
        assert await chat.say("/remind cancel 1") == (
            "Reminder #1 cancelled: review the pipeline\n"
        )
        assert await _tick(runtime, chat, clock, datetime(2026, 12, 1, tzinfo=UTC)) == ""


async def test_due_lists_reminders_of_today_and_tomorrow(
    berlin: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(berlin, clock, embedder) as (runtime, chat):
        await chat.say("/remind tomorrow 9am call Bob")
        await chat.say("/remind every day at 18:00 close the till")
        await chat.say("/remind next friday 9am far away")
        agent = runtime.coordinator.agent_for("reminders")
        assert isinstance(agent, RemindersAgent)
        assert await agent.due_lines(clock.now(), timedelta(days=2)) == [
            "Mon 23 Nov 18:00 CET · Reminder #2: close the till",
            "Tue 24 Nov 09:00 CET · Reminder #1: call Bob",
            "Tue 24 Nov 18:00 CET · Reminder #2: close the till",
        ]
