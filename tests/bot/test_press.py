"""A button press is recorded and applied in one transaction: a failure in between
leaves nothing half done, and the platform's retry of the same press applies it once.
A decided card names who decided, in the operator's time zone."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.replies import Reply
from bot.console import ConsoleSender
from bot.gateway import Outcome
from bot.inbound import Inbound
from bot.runtime import open_runtime
from config import Settings
from memory.approvals import ApprovalRow, ApprovalState
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from memory.store import Transaction
from tests.conftest import Chat

START = datetime(2026, 3, 2, 14, 13, tzinfo=UTC)  # 15:13 in Berlin (CET)


@pytest.fixture
async def berlin(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> AsyncIterator[Chat]:
    settings = Settings(home=tmp_path / "home", timezone="Europe/Berlin")
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], clock=ManualClock(START), embedder=embedder
    ) as runtime:
        yield Chat(runtime, out)


async def _buttons(chat: Chat) -> tuple[str, str]:
    body = await chat.runtime.store.scalar(
        "SELECT body FROM outbox WHERE body LIKE '%buttons%' ORDER BY id DESC LIMIT 1"
    )
    approve, reject = (button.data for button in Reply.from_json(body).buttons)
    return approve, reject


def _press(chat: Chat, data: str, name: str | None = None) -> Inbound:
    return Inbound(
        platform="console",
        message_id="press-1",
        chat_id="local",
        user_id="op",
        user_name=name,
        callback_data=data,
        received_at=START,
    )


async def _count(chat: Chat, sql: str) -> int:
    return int(await chat.runtime.store.scalar(sql))


async def test_a_press_that_fails_midway_leaves_nothing_and_its_retry_applies_once(
    berlin: Chat,
) -> None:
    chat = berlin
    await chat.say("/confirm pay Acme 120 EUR")
    approve, _ = await _buttons(chat)
    desk = chat.runtime.coordinator.approvals
    [card] = await desk.repo.pending()
    original = desk.handlers.get(card.purpose)
    assert original is not None
    failures = [RuntimeError("the disk went away mid-decision")]

    async def flaky(tx: Transaction, row: ApprovalRow, state: ApprovalState) -> None:
        if failures:
            raise failures.pop()
        await original(tx, row, state)

    desk.handlers[card.purpose] = flaky
    outbox_before = await _count(chat, "SELECT COUNT(*) FROM outbox")
    press = _press(chat, approve, "Ana Lopez (@ana)")
    with pytest.raises(RuntimeError):
        await chat.runtime.gateway.handle(press)
    # Nothing of the press remains: not the message, not the decision, not the card edit.
    assert await _count(chat, "SELECT COUNT(*) FROM inbound WHERE message_id = 'press-1'") == 0
    assert await _count(chat, "SELECT COUNT(*) FROM approvals WHERE state = 'pending'") == 1
    assert await chat.runtime.events.query(kind="approval.decided") == []
    assert await _count(chat, "SELECT COUNT(*) FROM outbox") == outbox_before
    assert await _count(chat, "SELECT COUNT(*) FROM tasks WHERE state = 'waiting_approval'") == 1

    # The platform sends the same press again (Telegram: the unconfirmed update).
    handled = await chat.runtime.gateway.handle(press)
    assert (handled.outcome, handled.notice) == (Outcome.DECIDED, "Approved.")
    await chat.runtime.settle()
    again = await chat.runtime.gateway.handle(press)
    assert again.outcome is Outcome.DUPLICATE
    await chat.runtime.settle()
    [decided] = await chat.runtime.events.query(kind="approval.decided")
    assert decided.actor == "console:op" and decided.payload["by_name"] == "Ana Lopez"
    assert await _count(chat, "SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'") == 1
    # The card names the decider and the time in the operator's zone, not console:op.
    assert "[card updated] Approved by Ana Lopez at 15:13 CET on 2026-03-02" in chat.out.getvalue()
    [row] = await chat.runtime.store.fetchall("SELECT * FROM approvals")
    assert (row["decided_by"], row["decided_name"]) == ("console:op", "Ana Lopez")


async def test_without_a_name_the_card_falls_back_to_the_id(berlin: Chat) -> None:
    await berlin.say("/confirm renew the domain")
    _, reject = await _buttons(berlin)
    handled = await berlin.runtime.gateway.handle(_press(berlin, reject))
    assert handled.notice == "Rejected."
    await berlin.runtime.settle()
    assert "[card updated] Rejected by console:op at 15:13 CET" in berlin.out.getvalue()
