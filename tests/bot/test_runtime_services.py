"""The services a feature's ports carry: its own scheduled jobs, the language model
within its budget, files for replies, and the operator's home conversations."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from agents.base import Agent, AgentResult, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Conversation, Intent
from agents.ports import Ports
from agents.replies import Attachment, Reply
from agents.scheduler import JobSpec
from bot.console import ConsoleSender
from bot.runtime import Runtime, home_conversations, open_runtime
from config import BudgetSettings, LlmSettings, Settings
from connectors.llm import user
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from memory.files import FileStore, safe_name
from tests.conftest import Chat
from tests.emulators.llm import LlmServer

START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


class ChimeIntent(Intent):
    """Say something at a scheduled time."""

    kind: Literal["chime"] = "chime"
    text: str = Field(min_length=1, max_length=200)


class AskIntent(Intent):
    """Ask the model one question."""

    kind: Literal["ask"] = "ask"
    text: str = Field(min_length=1, max_length=500)


class ChimeAgent(Agent):
    """Chimes (saying when a run is late), schedules, asks the model, sends a file."""

    name = "chimer"

    def __init__(self, ports: Ports) -> None:
        self._ports = ports

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        if isinstance(intent, ChimeIntent):
            when = intent.scheduled
            late = f" (late, due {when.scheduled_at:%H:%M} UTC)" if when and when.late else ""
            return [Reply(text=f"Chime: {intent.text}{late}")]
        assert isinstance(intent, AskIntent)
        if intent.text == "file":
            path = await self._ports.files.save(b"%PDF-1.4 tiny", "invoice 1.pdf")
            attachment = Attachment(
                path=str(path), filename="invoice 1.pdf", mime="application/pdf"
            )
            return [Reply(text="Here it is.", attachments=(attachment,))]
        if intent.text == "others":
            await self._ports.schedules.cancel("digest.daily")  # not this feature's job
        if not self._ports.model.configured:
            return [Reply(text="No model: a template answer.")]
        answer = await self._ports.model.complete(
            [user(intent.text)], idempotency_key=ctx.idempotency_key
        )
        return [Reply(text=f"Model: {answer.text}")]


def _jobs(settings: Settings, homes: tuple[Conversation, ...]) -> list[JobSpec]:
    return [
        JobSpec(
            id="chime.morning",
            owner="ignored: the runtime sets the owner",
            intent_kind="chime",
            schedule="every day at 8:00",
            payload={"conversation": home.model_dump(), "text": "good morning"},
            timezone="Europe/Berlin",
        )
        for home in homes
    ]


CHIMER = Feature(
    name="chimer",
    build=ChimeAgent,
    intents=(ChimeIntent, AskIntent),
    commands=(
        CommandSpec(
            "ask", "ask", "ask <text>", "ask the model", "/ask hi", "text", lambda t: {"text": t}
        ),
    ),
    jobs=_jobs,
)


@asynccontextmanager
async def _open(
    settings: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[tuple[Runtime, io.StringIO]]:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], features=[CHIMER], clock=clock, embedder=embedder
    ) as runtime:
        yield runtime, out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def test_a_declared_job_runs_once_even_after_downtime_and_restarts(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    # The digest's own daily job at noon keeps its message out of the chime's output.
    settings = Settings(home=tmp_path / "home", timezone="Europe/Berlin", digest={"at": "12:00"})
    async with _open(settings, clock, embedder) as (runtime, out):
        [job] = await runtime.scheduler.list_for("chimer")
        assert job.id == "chime.morning" and job.owner == "chimer"
        clock.set(datetime(2026, 11, 23, 7, 0, tzinfo=UTC))  # 08:00 Berlin
        await runtime.scheduler.run_due()
        await runtime.settle()
        assert out.getvalue() == "Chime: good morning\n"
    # Down from 07:30 to 10:00 UTC the next day: one late run at start, then none again.
    clock.set(datetime(2026, 11, 24, 10, 0, tzinfo=UTC))
    for _ in range(2):
        async with _open(settings, clock, embedder) as (runtime, out):
            await runtime.settle()
            late = out.getvalue()
    assert late == ""  # the second start found nothing left to run
    count = await _count_chimes(settings)
    assert count == 2  # the on-time one and exactly one late one


async def _count_chimes(settings: Settings) -> int:
    import sqlite3

    with sqlite3.connect(settings.database_path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM tasks WHERE kind = 'chime'").fetchone()[0])


async def test_a_late_run_says_it_is_late(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    # The digest's own daily job at noon keeps its message out of the chime's output.
    settings = Settings(home=tmp_path / "home", timezone="Europe/Berlin", digest={"at": "12:00"})
    async with _open(settings, clock, embedder):
        pass  # the job is declared; its first run is at 08:00 Berlin
    clock.set(datetime(2026, 11, 23, 9, 30, tzinfo=UTC))  # down over 08:00 Berlin
    async with _open(settings, clock, embedder) as (runtime, out):
        await runtime.settle()
        assert out.getvalue() == "Chime: good morning (late, due 07:00 UTC)\n"


async def test_a_feature_cannot_touch_another_features_job(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(home=tmp_path / "home")
    async with _open(settings, clock, embedder) as (runtime, out):
        chat = Chat(runtime, out)
        assert "There is no job 'digest.daily' of chimer" in await chat.say("/ask others")


async def test_the_model_port_records_spend_and_keeps_the_budget(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with LlmServer() as llm:
        settings = Settings(
            home=tmp_path / "home",
            llm=LlmSettings(
                **llm.settings(price_input_per_mtok=Decimal(1_000_000), price_output_per_mtok=0)
            ),
            budgets={"default": BudgetSettings(), "chimer": BudgetSettings(spend_per_day=20.0)},
        )
        async with _open(settings, clock, embedder) as (runtime, out):
            chat = Chat(runtime, out)
            llm.answer("forty-two", usage=(12, 7))
            assert await chat.say("/ask the answer?") == "Model: forty-two\n"
            llm.answer("again", usage=(12, 7))
            assert await chat.say("/ask again?") == "Model: again\n"
            # 24 input tokens at 1 per token: over the 20 budget, so no third call.
            reply = await chat.say("/ask once more?")
            assert "chimer has used its model budget for today (24.00 of 20.00)" in reply
            assert len(llm.requests) == 2
            rows = await runtime.store.fetchall("SELECT agent, tokens_in, cost FROM spend")
            assert [tuple(r) for r in rows] == [("chimer", 12, 12.0), ("chimer", 12, 12.0)]


async def test_without_a_model_features_use_templates(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with _open(Settings(home=tmp_path / "home"), clock, embedder) as (runtime, out):
        assert await Chat(runtime, out).say("/ask hi") == "No model: a template answer.\n"


async def test_a_reply_file_is_kept_before_the_reply_is_queued(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(home=tmp_path / "home")
    async with _open(settings, clock, embedder) as (runtime, out):
        said = await Chat(runtime, out).say("/ask file")
        [kept] = list(settings.files_dir.iterdir())
        assert kept.read_bytes() == b"%PDF-1.4 tiny"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert said.startswith("Here it is.\n") and str(kept) in said


async def test_files_are_content_addressed_and_written_once(tmp_path: Path) -> None:
    files = FileStore(tmp_path / "files")
    first = await files.save(b"abc", "../../etc/passwd")
    assert first.parent == tmp_path / "files" and first.name.endswith("-passwd")
    assert await files.save(b"abc", "../../etc/passwd") == first
    assert await files.save(b"abd", "passwd") != first
    assert safe_name("Rechnung März 2026.pdf") == "Rechnung-M-rz-2026.pdf"


def test_home_conversations() -> None:
    settings = Settings(telegram={"token": "1:x", "operators": [42, 7]})
    assert [
        (c.platform, c.chat_id, c.user_id) for c in home_conversations(settings, ["telegram"])
    ] == [("telegram", "42", "42")]
    assert home_conversations(settings, ["console"])[0].lane == "console:local"
    chosen = Settings(
        telegram={"token": "1:x", "operators": [42]}, digest={"to": ["telegram:-1001:7"]}
    )
    [topic] = home_conversations(chosen, ["telegram", "console"])
    assert (topic.chat_id, topic.thread_id, topic.user_id) == ("-1001", "7", "42")
