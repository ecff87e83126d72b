"""Semantic memory through the real console front end, end to end."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agents.base import TaskContext
from agents.intents import Conversation
from agents.notes import RememberIntent
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import MemorySettings, Settings
from memory.embedder import SentenceTransformerEmbedder
from memory.memories import Tier
from memory.semantic import EVICTED_TOPIC
from memory.store import Store
from tests.conftest import Chat


class ManualClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


pytestmark = pytest.mark.slow


async def test_remember_recall_forget_in_chat(chat: Chat) -> None:
    assert (await chat.say("/remember Acme prefers invoices on the 1st of the month")) == (
        "Remembered #1.\n"
    )
    await chat.say("/remember Lunch with Carol on Thursday")
    out = await chat.say("/recall when does Acme want to be billed?")
    first = out.splitlines()[0]
    assert re.fullmatch(
        r"#1 \(\d{1,2} \w{3}\) Acme prefers invoices on the 1st of the month", first
    )
    assert (await chat.say("/forget 1")) == "Forgot #1.\n"
    assert "#1 " not in await chat.say("/recall Acme invoices")
    assert "There is no note #1" in await chat.say("/forget 1")


async def test_a_question_in_plain_words_goes_to_recall(chat: Chat) -> None:
    await chat.say("/remember Acme prefers invoices on the 1st of the month")
    out = await chat.say("what did Acme say about billing?")
    assert out.startswith("#1 (")
    statement = await chat.say("Globex signs the contract next Tuesday")
    assert statement == "Remembered #2.\n"


async def test_an_unclear_message_offers_numbered_choices_and_a_number_picks_one(
    chat: Chat,
) -> None:
    await chat.say("/remember Acme prefers invoices on the 1st of the month")
    out = await chat.say("Acme")
    assert "Which one?" in out
    lines = out.splitlines()
    assert lines[1] == "  1. Search my notes: /recall Acme"
    assert lines[2] == "  2. Save it as a note: /remember Acme"
    assert lines[3] == "Send the number of your choice."  # a distant third is not offered
    picked = await chat.say("1")
    assert picked.startswith("#1 (")
    events = await chat.runtime.events.query(kind="choice.picked")
    assert len(events) == 1 and events[0].payload["option"] == 1
    # The last reply offers nothing now: another "1" is plain text, not a second pick.
    await chat.say("1")
    assert len(await chat.runtime.events.query(kind="choice.picked")) == 1


async def test_status_counts_notes(chat: Chat) -> None:
    await chat.say("/remember one")
    assert "Notes: 1." in await chat.say("/status")


class GatedEmbedder:
    """The real model behind a gate: it is "loading" until the test opens the gate."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self._inner = inner
        self.gate = asyncio.Event()

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def is_ready(self) -> bool:
        return self.gate.is_set() and self._inner.is_ready

    def start(self) -> None:
        self._inner.start()

    async def ready(self) -> None:
        await self.gate.wait()
        await self._inner.ready()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._inner.embed(texts)


async def test_status_does_not_wait_for_the_model(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """/status answers while the model is still loading (the model never loads here
    until the test says so), and says that it is loading."""
    gated = GatedEmbedder(embedder)
    out = io.StringIO()
    async with open_runtime(
        Settings(home=tmp_path / "home"), [ConsoleSender(out)], embedder=gated
    ) as runtime:
        chat = Chat(runtime, out)
        status = await chat.say("/status")
        assert "Notes: 0." in status
        assert "Memory index: preparing (the language model is loading)." in status
        gated.gate.set()
        state = await asyncio.wait_for(runtime.memory.wait_state(["ready", "keyword"]), 300)
        assert state.phase == "ready"
        assert "Memory index" not in await chat.say("/status")


async def test_chat_answers_status_from_a_fresh_home(tmp_path: Path) -> None:
    """`soloops chat` as a subprocess answers /status on a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env["SOLOOPS_HOME"] = str(tmp_path / "home")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "chat",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(b"/status\n")
    assert proc.returncode == 0, err.decode()
    assert "Notes: 0." in out.decode()


async def test_a_write_failure_while_preparing_the_index_is_retried_and_said_in_status(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Issue 10 item 7, end to end: /status says the index is being prepared again,
    recall answers by keywords meanwhile, and semantic recall comes back without a
    restart once the write succeeds."""
    settings = Settings(home=tmp_path / "home")
    out = io.StringIO()
    async with open_runtime(settings, embedder=embedder) as runtime:
        await runtime.memory.space("notes").remember(
            "Acme prefers invoices on the 1st of the month", source_key="k1", actor="op"
        )
    async with Store.open(settings.database_path) as store, store.write() as tx:
        await tx.execute("UPDATE memories SET embedding = NULL, model_id = NULL")
        await tx.execute(
            "CREATE TRIGGER fail_embedding BEFORE UPDATE OF embedding ON memories"
            " BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
        )
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        chat = Chat(runtime, out)
        await asyncio.wait_for(runtime.memory.wait_state(["retrying", "keyword"]), 300)
        status = await chat.say("/status")
        assert "Memory index: preparing again after a write failure (attempt 2)" in status
        assert "keyword search" in await chat.say("/recall Acme invoices")
        async with runtime.store.write() as tx:
            await tx.execute("DROP TRIGGER fail_embedding")
        state = await asyncio.wait_for(runtime.memory.wait_state(["ready", "keyword"]), 300)
        assert state.phase == "ready"
        recall = await chat.say("/recall when does Acme want to be billed?")
        assert "keyword" not in recall and "Acme prefers invoices" in recall
        assert "Memory index" not in await chat.say("/status")


async def test_the_runtime_evicts_expired_working_memories_on_its_own(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock()
    settings = Settings(
        home=tmp_path / "home",
        memory=MemorySettings(working_ttl_s=60, eviction_interval_s=0.05),
    )
    async with open_runtime(settings, embedder=embedder, clock=clock) as runtime:
        space = runtime.memory.space("notes")
        evicted = asyncio.Event()
        runtime.store.subscribe(EVICTED_TOPIC, lambda _ids: evicted.set())
        await space.remember("call Acme back", source_key="w", actor="t", tier=Tier.WORKING)
        clock.moment += timedelta(seconds=61)
        await asyncio.wait_for(evicted.wait(), 60)  # the runtime's own job; a safety net
        assert await space.count() == 0
        [event] = await runtime.events.query(kind="memory.deleted")
        assert event.payload["reason"] == "expired"


async def test_a_rerun_of_remember_stores_once(chat: Chat) -> None:
    agent = chat.runtime.coordinator.agent_for("remember")
    assert agent is not None
    intent = RememberIntent(
        conversation=Conversation(platform="console", chat_id="local", user_id="op"),
        idempotency_key="console:crashed-1",
        text="Acme prefers invoices on the 1st",
    )
    ctx = TaskContext(task_id=1, attempt=1, idempotency_key="console:crashed-1")
    first = await agent.handle(intent, ctx)
    again = await agent.handle(intent, TaskContext(1, 2, "console:crashed-1"))
    assert [r.text for r in first] == [r.text for r in again] == ["Remembered #1."]
    assert len(await chat.runtime.events.query(kind="memory.written")) == 1


async def test_remember_that_stores_only_the_note(chat: Chat) -> None:
    """Issue 10 item 16, with the real model: the lead-in is not part of the note."""
    assert (await chat.say("remember that the door code is 4411")).startswith("Remembered #1.")
    [note] = await chat.runtime.memory.space("notes").latest(5)
    assert note.text == "the door code is 4411"


async def test_a_question_like_a_note_is_answered_not_stored(chat: Chat) -> None:
    """A question is never stored as a note, however much it reads like one."""
    assert (await chat.say("remember that the door code is 4411")).startswith("Remembered #1.")
    answer = await chat.say("what is the door code?")
    assert "#1 (" in answer and "the door code is 4411" in answer
    assert [n.text for n in await chat.runtime.memory.space("notes").latest(5)] == [
        "the door code is 4411"
    ]


async def test_a_request_soloops_cannot_do_lists_the_closest_commands(chat: Chat) -> None:
    """Issue 10 item 16: "send an email to jane" is neither a note search nor a menu."""
    await chat.say("/remember Jane prefers calls in the morning")
    out = await chat.say("send an email to jane")
    lines = out.splitlines()
    assert lines[0] == "I can't do that yet." and lines[1] == "Closest:"
    assert all(line.startswith("  /") for line in lines[2:-1]) and len(lines[2:-1]) == 3
    assert lines[-1] == "Send /help for all."
    assert "Which one?" not in out and "Jane prefers" not in out
    assert len(await chat.runtime.memory.space("notes").latest(5)) == 1
    [decided] = await chat.runtime.events.query(kind="router.decided")
    assert decided.payload["reason"] == "unsupported"


async def test_a_bare_number_with_no_question_waiting_is_not_a_menu(chat: Chat) -> None:
    """Issue 10 item 16: "1" when nothing offered choices gets a plain answer."""
    for text in ("1", "2."):
        out = await chat.say(text)
        assert "answers no question" in out and "/help" in out
        assert "Which one?" not in out and "Send the number" not in out
    assert await chat.runtime.events.query(kind="choice.picked") == []


async def test_recall_lists_notes_first_once_and_dated_and_forgets_turns(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Issue 10 item 17, the reported scenario on a real SQLite file: two earlier
    questions do not outrank the note that answers them, a note is listed once, the
    cutoff answers "nothing relevant", and /forget also drops the recent turns."""
    clock = ManualClock()
    clock.moment = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)
    out = io.StringIO()
    async with open_runtime(
        Settings(home=tmp_path / "home"), [ConsoleSender(out)], embedder=embedder, clock=clock
    ) as runtime:
        chat = Chat(runtime, out)
        assert await chat.say("/remember Acme pays on the 1st") == "Remembered #1.\n"
        await chat.say("/remember Acme pays on the 1st")  # the same text again: #2
        await chat.say("/remember Lunch with Carol on Thursday")
        await chat.say("what does Acme pay?")
        await chat.say("when does Acme pay?")
        recall = (await chat.say("/recall acme")).splitlines()
        assert recall == ["#1 (12 Nov) Acme pays on the 1st"]
        nothing = await chat.say("/recall banana")
        assert nothing == "Nothing relevant about 'banana'. /notes lists the newest.\n"
        # A statement the router could not place stays in the recent turns, after the
        # notes, and not where a note holds the same text...
        assert "Which one?" in await chat.say("Globex contract")
        await chat.say("/remember Globex renews in March")
        globex = (await chat.say("/recall globex")).splitlines()
        assert globex == [
            "#4 (12 Nov) Globex renews in March",
            "Said earlier in this chat (not saved):",
            "  Globex contract",
        ]
        await chat.say("/remember Globex contract")
        assert (await chat.say("/recall globex")).count("Globex contract") == 1
        # ...and a forgotten note's words do not come back through it.
        assert "I can't do that yet." in await chat.say("Initech pays late")
        assert "  Initech pays late" in await chat.say("/recall initech")
        await chat.say("/remember Initech pays late")
        assert await chat.say("/forget 6") == "Forgot #6.\n"
        after = await chat.say("/recall initech")
        assert after == "Nothing relevant about 'initech'. /notes lists the newest.\n"
