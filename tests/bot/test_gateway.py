"""Every inbound message through the real gateway, coordinator and console sender."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.gateway import Handled, Outcome
from memory.inbound import InboundRepo
from memory.memories import MemoryRepo
from tests.conftest import Chat

BAD_INPUT = [
    ("/frobnicate", "Unknown command /frobnicate", "unknown_command"),
    ("", "empty", "empty"),
    ("x" * 100_000, "100,000 characters; the limit is 16,000", "too_long"),
    ("\x00\x01\x02garbage\x7f\x1b[2J", "not readable text", "not_text"),
    ("caf\ufffd \ufffd\ufffd", "not readable text", "not_text"),
    ('/forget "12', "unbalanced quote", "bad_arguments"),
]


async def test_remember_and_recall(chat: Chat) -> None:
    assert await chat.say("/remember Acme pays invoices on the 1st") == "Remembered #1.\n"
    out = await chat.say("/recall acme")
    assert out.startswith("#1 (")
    assert "Acme pays invoices on the 1st" in out


@pytest.mark.parametrize(("text", "says", "reason"), BAD_INPUT)
async def test_bad_input_gets_a_clear_reply_and_an_event_and_loses_nothing(
    chat: Chat, text: str, says: str, reason: str
) -> None:
    await chat.say("/remember keep me safe")
    before = await chat.runtime.events.last_seq()
    out = await chat.say(text)
    assert out.startswith("⚠ ")
    assert says in out
    assert "Traceback" not in out
    assert len(out) < 400  # short, even for a 100 kB line
    rejected = [e for e in await chat.runtime.events.query() if e.seq > before]
    kinds = [e.kind for e in rejected]
    assert kinds[:2] == ["message.received", "command.rejected"]
    assert rejected[1].payload["reason"] == reason
    assert rejected[0].payload["chars"] == len(text)
    assert len(rejected[0].payload["text"]) <= 200
    notes = await MemoryRepo(chat.runtime.store).latest("notes", datetime.now(UTC))
    assert [n.text for n in notes] == ["keep me safe"]
    assert "keep me safe" in await chat.say("/recall safe")


async def test_the_full_message_is_kept_even_when_refused(chat: Chat) -> None:
    await chat.say("y" * 20_000)
    stored = await chat.runtime.store.scalar("SELECT text FROM inbound")
    assert stored == "y" * 20_000


async def test_a_repeated_platform_message_id_is_processed_once(chat: Chat) -> None:
    gateway = chat.runtime.gateway
    first: Handled = await gateway.handle(chat.inbound("/remember once", message_id="dup"))
    second = await gateway.handle(chat.inbound("/remember once", message_id="dup"))
    await chat.runtime.settle()
    assert first.outcome is Outcome.QUEUED
    assert second.outcome is Outcome.DUPLICATE
    assert chat.out.getvalue() == "Remembered #1.\n"
    assert await MemoryRepo(chat.runtime.store).count("notes") == 1
    assert await InboundRepo(chat.runtime.store).count() == 1
    assert [e.kind for e in await chat.runtime.events.query(kind="message")] == [
        "message.received",
        "message.duplicate",
    ]


async def test_non_operators_are_refused_and_nothing_runs(chat: Chat) -> None:
    stranger = chat.inbound("/notes").model_copy(update={"platform": "telegram", "user_id": "999"})
    handled = await chat.runtime.gateway.handle(stranger)
    await chat.runtime.settle()
    assert handled.outcome is Outcome.REFUSED
    assert await chat.runtime.store.scalar("SELECT COUNT(*) FROM tasks") == 0
    [event] = await chat.runtime.events.query(kind="message.refused")
    assert event.actor == "telegram:999"


async def test_forget_and_notes(chat: Chat) -> None:
    await chat.say("/remember first")
    await chat.say("/remember second")
    assert await chat.say("/forget 1") == "Forgot #1.\n"
    out = await chat.say("/forget 1")
    assert out.startswith("⚠ There is no note #1.")
    listed = await chat.say("/notes")
    assert "second" in listed
    assert "first" not in listed
    deleted = await chat.runtime.events.query(kind="memory.deleted")
    assert "first" not in str(deleted[0].payload)  # forgotten text stays out of the log


async def test_help_status_and_events(chat: Chat) -> None:
    helped = await chat.say("/help")
    assert "/remember <text>" in helped
    assert "/recall <query>" in helped
    assert "Example: /forget 12" in await chat.say("/help forget")
    assert "Did you mean /recall?" in await chat.say("/help recal")
    await chat.say("/frobnicate")
    status = await chat.say("/status")
    assert "Tasks:" in status
    assert "succeeded 3" in status
    assert "running 1" in status  # the /status task itself
    events = await chat.say("/events 3")
    assert len(events.strip().splitlines()) == 3
    assert events.startswith("#")
