"""Telegram polling under attack (issue 10 items 2 and 4): a full disk loses nothing,
and no malformed update stops polling. Real PTB against the loopback emulator, real
SQLite; the full disk is a real SQLITE_FULL (``PRAGMA max_page_count`` on the store's
writer connection)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from agents.backoff import Backoff
from bot.runtime import Runtime, open_runtime
from bot.telegram import NOTHING_TO_DO, TelegramFrontEnd
from bot.telegram_updates import confirmable_id, preview, update_problem
from config import Settings, TelegramSettings
from memory.embedder import SentenceTransformerEmbedder
from tests.emulators.telegram import JSON, TelegramEmulator
from tests.harness.full_disk import fill_up, make_room

OP = 4242
FAST = Backoff(base_s=0.01, cap_s=0.05)  # the schedule's shape, at test speed


@dataclass
class Bot:
    runtime: Runtime
    front_end: TelegramFrontEnd
    api: TelegramEmulator

    async def count(self, sql: str) -> int:
        return int(await self.runtime.store.scalar(sql))


@asynccontextmanager
async def running(
    settings: Settings, api: TelegramEmulator, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[Bot]:
    telegram = TelegramSettings.model_validate(
        {
            "token": api.token,
            "base_url": api.base_url,
            "base_file_url": api.base_file_url,
            "operators": [OP],
            "poll_timeout_s": 1,
        }
    )
    front_end = TelegramFrontEnd(telegram, backoff=FAST)
    async with open_runtime(
        settings.model_copy(update={"telegram": telegram}),
        [front_end.sender],
        operators={front_end.platform: front_end.operators},
        embedder=embedder,
    ) as runtime:
        await front_end.start(runtime)
        try:
            yield Bot(runtime, front_end, api)
        finally:
            await front_end.stop()


@pytest.fixture
async def bot(
    settings: Settings, telegram_api: TelegramEmulator, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[Bot]:
    async with running(settings, telegram_api, embedder) as started:
        yield started


# -- item 2: a full disk --------------------------------------------------------


async def test_a_full_disk_holds_updates_and_loses_none(bot: Bot) -> None:
    api = bot.api
    warm = api.send_text(OP, "/remember warm up")
    await api.wait_for(lambda: api.confirmed(warm), what="warm-up confirmed")
    await bot.runtime.settle()
    stored_before = await bot.count("SELECT COUNT(*) FROM inbound")
    assert bot.front_end.health.healthy

    await fill_up(bot.runtime.store)
    # Each text needs overflow pages, so storing it needs pages the file may not grow.
    pad = "x" * 6000
    updates = [api.send_text(OP, f"/remember note-{i:02d} {pad}") for i in range(20)]
    await api.wait_for(
        lambda: bot.front_end.health.attempts >= 5, within_s=30, what="retries while full"
    )
    health = bot.front_end.health
    assert not health.healthy
    assert "full" in health.problem
    assert not any(api.confirmed(u) for u in updates)  # nothing confirmed...
    assert api.pending_updates() == 20  # ...so Telegram still holds all 20
    assert await bot.count("SELECT COUNT(*) FROM inbound") == stored_before
    notices = [m for m in api.sent(OP) if "cannot store new messages" in m.text]
    assert len(notices) == 1  # told once, by a direct message

    await make_room(bot.runtime.store)
    await api.wait_for(
        lambda: all(api.confirmed(u) for u in updates), within_s=60, what="all 20 confirmed"
    )
    await bot.runtime.settle()
    assert bot.front_end.health.healthy

    assert await bot.count("SELECT COUNT(*) FROM inbound") == stored_before + 20
    # Stored in the order sent (the agents then work on them concurrently).
    rows = await bot.runtime.store.fetchall(
        "SELECT text FROM inbound WHERE text LIKE '/remember note-%' ORDER BY id"
    )
    assert [row[0][10:17] for row in rows] == [f"note-{i:02d}" for i in range(20)]
    notes = await bot.runtime.store.fetchall(
        "SELECT substr(text, 1, 7) FROM memories WHERE text LIKE 'note-%'"
    )
    assert sorted(row[0] for row in notes) == [f"note-{i:02d}" for i in range(20)]  # once each
    asked = {u["message"]["message_id"] for u in updates}
    answered = [m.reply_to for m in api.sent(OP) if m.reply_to in asked]
    assert sorted(answered) == sorted(asked)  # one reply each, none twice
    [outage] = await bot.runtime.events.query(kind="telegram.storage_failed")
    assert outage.payload["attempts"] >= 5
    assert "full" in outage.payload["error"]
    assert any("store messages again" in m.text for m in api.sent(OP))


# -- item 4: malformed updates ----------------------------------------------------


def _message(text: str, **changes: Any) -> JSON:
    message: JSON = {
        "message_id": 900,
        "date": 1_700_000_000,
        "chat": {"id": OP, "type": "private"},
        "from": {"id": OP, "is_bot": False, "first_name": "Ada"},
        "text": text,
    }
    message.update(changes)
    return {k: v for k, v in message.items() if v is not None}


POISON: list[tuple[str, object]] = [
    ("no date", {"update_id": 1, "message": _message("x", date=None)}),
    ("no update_id", {"message": _message("x")}),
    ("string update_id", {"update_id": "not-a-number", "message": _message("x")}),
    ("digit-string update_id", {"update_id": "77", "message": _message("x")}),
    ("from without id", {"update_id": 2, "message": _message("x", **{"from": {"a": 1}})}),
    ("not an object", [1, 2, 3]),
    ("a string", "hello"),
    ("null", None),
    ("message a list", {"update_id": 3, "message": []}),
    ("text a number", {"update_id": 4, "message": _message(5)}),  # type: ignore[arg-type]  # the poison
    ("chat without id", {"update_id": 5, "message": _message("x", chat={"type": "private"})}),
    (
        "callback without id",
        {
            "update_id": 6,
            "callback_query": {
                "from": {"id": OP, "is_bot": False, "first_name": "Ada"},
                "chat_instance": "c",
                "data": "d",
            },
        },
    ),
    ("callback a string", {"update_id": 7, "callback_query": "press"}),
]


@pytest.mark.parametrize(("name", "raw"), POISON, ids=[name for name, _ in POISON])
def test_update_problem_names_what_is_wrong(name: str, raw: object) -> None:
    assert update_problem(raw) is not None, name


def test_a_good_update_has_no_problem() -> None:
    assert update_problem({"update_id": 9, "message": _message("/help")}) is None
    assert update_problem({"update_id": 9, "edited_message": {"odd": True}}) is None


def test_confirmable_ids_and_previews() -> None:
    assert confirmable_id({"update_id": 5}) == 5
    assert confirmable_id({"update_id": "77"}) == 77
    assert confirmable_id({"update_id": True}) is None
    assert confirmable_id([1]) is None
    long = preview({"text": "y" * 1000})
    assert len(long) == 300 and long.endswith("…")


async def test_poisoned_updates_are_skipped_and_polling_goes_on(bot: Bot) -> None:
    api = bot.api
    rng = random.Random(10)
    good: list[JSON] = []
    entries: list[JSON] = []
    for index, (_, raw) in enumerate(POISON):
        entries.append(api.push_raw(raw))
        if rng.random() < 0.6 or index == len(POISON) - 1:  # the batch ends with a good one
            good.append(api.send_text(OP, f"/remember good-{len(good)}"))
    await api.wait_for(
        lambda: all(api.confirmed(u) for u in good + entries), within_s=30, what="all confirmed"
    )
    await bot.runtime.settle()
    asked = {u["message"]["message_id"] for u in good}
    answered = [m for m in api.sent(OP) if m.reply_to in asked]
    assert len(answered) == len(good)
    assert all(m.text.startswith("Remembered #") for m in answered)
    malformed = await bot.runtime.events.query(kind="update.malformed")
    assert len(malformed) == len(POISON)
    assert all(e.payload["problem"] and len(e.payload["update"]) <= 300 for e in malformed)
    # Still polling: a message after the poison is answered too.
    late = api.send_text(OP, "/remember after the storm")
    await api.wait_for(lambda: api.confirmed(late), what="late message")
    await bot.runtime.settle()
    assert any(m.reply_to == late["message"]["message_id"] for m in api.sent(OP))
    assert bot.front_end.health.healthy


async def test_a_button_without_data_is_answered(bot: Bot) -> None:
    api = bot.api
    press = api.push(
        {
            "callback_query": {
                "id": "cq-empty",
                "from": {"id": OP, "is_bot": False, "first_name": "Ada"},
                "chat_instance": "c",
                "message": _message("a card"),
            }
        }
    )
    await api.wait_for(lambda: api.confirmed(press), what="press confirmed")
    await api.wait_for(lambda: api.callback_answers, what="an answer")
    [answer] = api.callback_answers
    assert answer["callback_query_id"] == "cq-empty"
    assert answer["text"] == NOTHING_TO_DO
