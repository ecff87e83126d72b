"""The digest feature through the live runtime: the daily job on a manual clock (on
time, late after downtime, once after days down, across DST), /digest with its chart
and cards, /today, /runbook, /schedule and the due-items hook."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import pytest

from agents.base import Agent, AgentResult, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Reply
from bot.console import ConsoleSender
from bot.runtime import Runtime, open_runtime
from config import Settings
from memory.clock import ManualClock
from memory.digest_facts import Section
from memory.embedder import SentenceTransformerEmbedder
from tests.conftest import Chat
from tests.emulators.provider import Provider

BERLIN = ZoneInfo("Europe/Berlin")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JOB = "digest.daily@console:local"


def berlin(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=BERLIN).astimezone(UTC)  # type: ignore[misc]  # y, m, d, h


class BoomIntent(Intent):
    """Fail on purpose (a failed task for the digest)."""

    kind: Literal["boom"] = "boom"


class DueAgent(Agent):
    """Has something due (and fails when told to)."""

    name = "dues"

    def __init__(self, ports: Ports) -> None:
        self.broken = False

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        raise RuntimeError("the boom feature exploded")

    async def due(self, now: datetime, horizon: datetime) -> Section | None:
        if self.broken:
            raise OSError("ledger unreadable")
        return Section("Invoices due (1)", (f"• #7 Acme, due before {horizon:%Y-%m-%d %H:%M}",))


DUES = Feature(
    name="dues",
    build=DueAgent,
    intents=(BoomIntent,),
    commands=(CommandSpec("boom", "boom", "boom", "fail on purpose"),),
)


@asynccontextmanager
async def running(
    settings: Settings,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
    features: Sequence[Feature] = (),
) -> AsyncIterator[tuple[Runtime, io.StringIO]]:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], clock=clock, embedder=embedder, features=features
    ) as runtime:
        await runtime.settle()
        yield runtime, out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", timezone="Europe/Berlin")


def digests(text: str) -> int:
    return text.count("Daily digest, ")


def digest_tasks(settings: Settings) -> list[str]:
    with sqlite3.connect(settings.database_path) as conn:
        rows = conn.execute("SELECT idempotency_key FROM tasks WHERE kind = 'digest' ORDER BY id")
        return [str(row[0]) for row in rows]


def chart_of(text: str) -> bytes:
    [line] = [line for line in text.splitlines() if line.startswith("📎 digest-")]
    return Path(line.split(": ", 1)[1]).read_bytes()


async def test_the_digest_comes_at_0800_berlin_with_its_chart(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 7))
    async with running(settings, clock, embedder) as (runtime, out):
        [job] = await runtime.scheduler.list_for("digest")
        assert (job.id, job.timezone, job.misfire) == (JOB, "Europe/Berlin", "once")
        clock.set(berlin(2026, 6, 1, 7, 59))
        await runtime.scheduler.run_due()
        await runtime.settle()
        assert out.getvalue() == ""
        clock.set(berlin(2026, 6, 1, 8))
        await runtime.scheduler.run_due()
        await runtime.settle()
        text = out.getvalue()
    assert digests(text) == 1 and "Late" not in text
    assert "Daily digest, Mon 01 Jun 2026 (Europe/Berlin)" in text
    assert "All clear" in text
    png = chart_of(text)
    assert png.startswith(PNG_MAGIC)
    assert int.from_bytes(png[16:20], "big") == 800 and int.from_bytes(png[20:24], "big") == 400


async def test_down_from_0700_to_1000_gives_one_late_digest_at_start(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 6, 30))
    async with running(settings, clock, embedder):
        clock.set(berlin(2026, 6, 1, 7))
    clock.set(berlin(2026, 6, 1, 10))  # down 07:00-10:00 Berlin
    async with running(settings, clock, embedder) as (_, out):
        first = out.getvalue()
    async with running(settings, clock, embedder) as (_, out):
        second = out.getvalue()
    assert digests(first) == 1
    assert first.startswith("Late: this digest was due Mon 01 Jun 08:00; soloops was not running")
    assert second == ""
    assert len(digest_tasks(settings)) == 1


async def test_down_for_three_days_gives_one_digest_not_three(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 7))
    async with running(settings, clock, embedder):
        pass
    clock.set(berlin(2026, 6, 3, 9))  # missed the 1st, 2nd and 3rd at 08:00
    async with running(settings, clock, embedder) as (_, out):
        text = out.getvalue()
    assert digests(text) == 1
    assert "runs missed since Mon 01 Jun 08:00, 2 folded into this one" in text
    assert len(digest_tasks(settings)) == 1


async def test_restarts_never_duplicate_the_digest_job(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 7))
    for _ in range(3):
        async with running(settings, clock, embedder) as (runtime, _out):
            jobs = await runtime.scheduler.list_for("digest")
    assert [job.id for job in jobs] == [JOB]
    clock.set(berlin(2026, 6, 1, 8, 30))
    for _ in range(2):
        async with running(settings, clock, embedder):
            pass
    assert len(digest_tasks(settings)) == 1


@pytest.mark.parametrize(
    ("first", "last", "utc_hours"),
    [
        ((2026, 3, 27), (2026, 3, 31), [7, 7, 6, 6, 6]),  # clocks go forward on the 29th
        ((2026, 10, 23), (2026, 10, 27), [6, 6, 7, 7, 7]),  # and back on the 25th
    ],
)
async def test_the_daily_digest_stays_at_0800_local_across_dst(
    settings: Settings,
    embedder: SentenceTransformerEmbedder,
    first: tuple[int, int, int],
    last: tuple[int, int, int],
    utc_hours: list[int],
) -> None:
    start = datetime(*first, 0, 0, tzinfo=UTC)
    end = datetime(*last, 23, 0, tzinfo=UTC)
    clock = ManualClock(start)
    async with running(settings, clock, embedder) as (runtime, out):
        moment = start
        while moment <= end:  # an hour at a time, as a running soloops would see it
            moment += timedelta(hours=1)
            clock.set(moment)
            if (await runtime.scheduler.run_due()).submitted:
                await runtime.settle()
        text = out.getvalue()
    keys = digest_tasks(settings)
    instants = [datetime.fromisoformat(key.rsplit("@", 1)[1]) for key in keys]
    assert [i.astimezone(BERLIN).strftime("%d %H:%M") for i in instants] == [
        f"{first[2] + n:02d} 08:00" for n in range(5)
    ]
    assert [i.hour for i in instants] == utc_hours
    assert digests(text) == 5 and "Late" not in text


async def test_digest_now_names_failures_dead_letters_and_approvals_with_buttons_again(
    settings: Settings, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = settings.model_copy(update={"hooks": {"crm": provider.hook()}})
    clock = ManualClock(datetime.now(UTC))
    async with running(settings, clock, embedder, [DUES]) as (runtime, out):
        chat = Chat(runtime, out)
        all_clear = await chat.say("/digest")
        await chat.say("/boom")
        await chat.say("/hook crm please approve me")
        await chat.say("/policy ops.hook auto")
        provider.fail_next(1, status=403, body="bad signature")
        await chat.say("/hook crm broken")
        before = await runtime.store.fetchall("SELECT MAX(id) AS id FROM outbox")
        said = await chat.say("/digest")
        rows = await runtime.store.fetchall(
            # A long body is kept once in reply_bodies; the row points at it.
            "SELECT COALESCE(b.body, o.body) AS body FROM outbox o"
            " LEFT JOIN reply_bodies b ON b.id = o.body_id WHERE o.id > ? ORDER BY o.id",
            (before[0]["id"],),
        )
    assert "Invoices due (1)\n• #7 Acme, due before" in all_clear
    assert "Failures (last 24 h)" in said
    assert "the boom feature exploded" in said
    assert "→ /runbook webhook-rejected" in said
    assert "Dead letters (1): Retry or Discard" in said
    assert "Waiting for you (1)" in said
    assert "Invoices due (1)" in said
    assert "2 card(s) shown again above, with their buttons." in said
    bodies = [Reply.from_json(row["body"]) for row in rows]
    labels = [[button.label for button in reply.buttons] for reply in bodies]
    # The dead letter's card, then the pending approval's, then the digest with its chart.
    assert labels[0] == ["Retry", "Discard"]
    assert labels[1][:2] == ["Approve", "Reject"]
    assert bodies[2].text.startswith("Daily digest") and bodies[2].attachments[0].kind == "photo"
    assert chart_of(said).startswith(PNG_MAGIC)


async def test_today_says_what_needs_the_operator_now(
    settings: Settings, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = settings.model_copy(update={"hooks": {"crm": provider.hook()}})
    clock = ManualClock(datetime.now(UTC))
    async with running(settings, clock, embedder, [DUES]) as (runtime, out):
        chat = Chat(runtime, out)
        agent = runtime.coordinator.agent_for("boom")
        assert isinstance(agent, DueAgent)
        agent.broken = True
        calm = await chat.say("/today")
        agent.broken = False
        await chat.say("/hook crm please approve me")
        busy = await chat.say("/today")
    assert calm.startswith("Needs you now")
    assert "dues: due items unavailable" in calm and "OSError: ledger unreadable" in calm
    assert "Decide (1)" in busy and "Invoices due (1)" in busy
    assert "📎" not in busy  # /today has no chart


async def test_runbook_shows_one_or_lists_them(chat: Chat) -> None:
    shown = await chat.say("/runbook webhook-rejected")
    assert shown.startswith("# ") and "What to do" in shown
    listed = await chat.say("/runbook")
    assert "• smtp-auth-failed:" in listed and "• webhook-rejected:" in listed
    wrong = await chat.say("/runbook nope")
    assert "There is no runbook 'nope' (event #" in wrong
    assert "Type /runbook <kind>, one of:\n• action-uncertain:" in wrong
    assert "• webhook-rejected:" in wrong
    [unknown] = await chat.runtime.events.query(kind="runbook.unknown", limit=1)
    assert unknown.payload == {"asked": "nope"}


async def test_schedule_lists_and_pauses_resumes_cancels_any_job(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 7))
    async with running(settings, clock, embedder) as (runtime, out):
        chat = Chat(runtime, out)
        listed = await chat.say("/schedule")
        assert listed.startswith(f"{JOB} · digest · 'every day at 08:00' (Europe/Berlin)")
        assert "next 2026-06-01 08:00 CEST (06:00 UTC)" in listed
        assert "Change one: /schedule [pause|resume|cancel <id>]" in listed
        assert "is paused" in await chat.say(f"/schedule pause {JOB}")
        clock.set(berlin(2026, 6, 1, 9))
        await runtime.scheduler.run_due()
        await runtime.settle()
        assert digests(out.getvalue()) == 0  # paused over 08:00: no digest
        assert "· paused ·" in await chat.say("/schedule")
        resumed = await chat.say(f"/schedule resume {JOB}")
        assert "active again; next run 2026-06-02 08:00 CEST (06:00 UTC)" in resumed
        assert "is cancelled" in await chat.say(f"/schedule cancel {JOB}")
        remaining = await chat.say("/schedule")
        assert JOB not in remaining  # a cancelled job is no longer listed
        assert remaining.startswith("invoices.reminders")  # the other features' jobs stay
        unknown = await chat.say("/schedule pause nope")
        assert "no job 'nope'; /schedule lists the jobs" in unknown
        again = await chat.say(f"/schedule resume {JOB}")
        assert "is cancelled; add it again to reschedule" in again
        [job] = await runtime.scheduler.list_for("digest")
        assert str(job.state) == "cancelled"


async def test_schedule_refuses_bad_input_saying_what_to_type(chat: Chat) -> None:
    bad = await chat.say("/schedule stop it")
    assert bad == (
        "⚠ /schedule 'stop' is not pause, resume or cancel."
        " Usage: /schedule [pause|resume|cancel <id>], e.g. /schedule pause"
        " digest.daily@console:local\n"
    )
    assert "pause takes one job id" in await chat.say("/schedule pause")
    [rejected] = await chat.runtime.events.query(kind="command.rejected", limit=1)
    assert rejected.payload["reason"] == "bad_arguments"
    [job] = await chat.runtime.scheduler.list_for("digest")
    assert str(job.state) == "active"  # nothing changed


async def test_a_switched_off_digest_skips_its_job_and_still_answers_on_demand(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(berlin(2026, 6, 1, 7))
    async with running(settings, clock, embedder):
        pass  # an earlier run declared the daily job
    off = settings.model_copy(
        update={"digest": settings.digest.model_copy(update={"enabled": False})}
    )
    clock.set(berlin(2026, 6, 1, 9))  # past 08:00: the job is due
    async with running(off, clock, embedder) as (runtime, out):
        await runtime.settle()
        assert digests(out.getvalue()) == 0
        [skipped] = await runtime.events.query(kind="digest.skipped", limit=1)
        assert skipped.payload["reason"] == "the daily digest is switched off"
        assert digests(await Chat(runtime, out).say("/digest")) == 1
