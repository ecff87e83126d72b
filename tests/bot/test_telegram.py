"""The Telegram front end, end to end: real PTB over HTTP to the loopback emulator,
real SQLite, the real gateway, coordinator and outbox."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from agents.replies import CALLBACK_DATA_MAX, Reply
from bot.doctor import _telegram
from bot.frontends import configured_front_ends
from bot.runtime import Runtime, open_runtime
from bot.telegram import TelegramFrontEnd
from config import ConfigError, Settings, TelegramSettings
from memory.approvals import ApprovalState
from memory.outbox import OutboxRepo
from memory.store import Store
from memory.tasks import TaskState
from tests.emulators.telegram import JSON, Failure, StoredMessage, TelegramEmulator

OP = 4242
STRANGER = 666


@dataclass
class Running:
    """soloops running on Telegram against the emulator."""

    runtime: Runtime
    front_end: TelegramFrontEnd
    api: TelegramEmulator

    async def deliver(self, update: JSON) -> None:
        """Wait until soloops has taken ``update`` and its work and replies settled."""
        await self.api.wait_for(lambda: self.api.confirmed(update), what="update confirmed")
        await self.runtime.settle()

    async def say(self, text: str, *, user: int = OP, **kwargs: int) -> JSON:
        update = self.api.send_text(user, text, **kwargs)
        await self.deliver(update)
        return update

    async def press(self, data: str, card: StoredMessage, *, user: int = OP) -> str:
        """Press a button; return the callback answer soloops gave."""
        answers = len(self.api.callback_answers)
        await self.deliver(self.api.press(user, data, card))
        await self.api.wait_for(lambda: len(self.api.callback_answers) > answers, what="answer")
        return str(self.api.callback_answers[-1].get("text", ""))

    def card(self) -> StoredMessage:
        return next(m for m in reversed(self.api.sent()) if m.buttons)

    async def count(self, sql: str) -> int:
        return int(await self.runtime.store.scalar(sql))


def telegram_settings(api: TelegramEmulator, **overrides: object) -> TelegramSettings:
    values: dict[str, object] = {
        "token": api.token,
        "base_url": api.base_url,
        "base_file_url": api.base_file_url,
        "operators": [OP],
        "poll_timeout_s": 1,
        **overrides,
    }
    return TelegramSettings.model_validate(values)


@asynccontextmanager
async def running(
    settings: Settings, api: TelegramEmulator, **overrides: object
) -> AsyncIterator[Running]:
    """What ``soloops run`` does with a Telegram token (bot.cli._serve), minus signals."""
    telegram = telegram_settings(api, **overrides)
    front_end = TelegramFrontEnd(telegram)
    async with open_runtime(
        settings.model_copy(update={"telegram": telegram}),
        [front_end.sender],
        operators={front_end.platform: front_end.operators},
    ) as runtime:
        await front_end.start(runtime)
        try:
            yield Running(runtime, front_end, api)
        finally:
            await front_end.stop()


@pytest.fixture
async def bot(settings: Settings, telegram_api: TelegramEmulator) -> AsyncIterator[Running]:
    async with running(settings, telegram_api) as started:
        yield started


async def test_operator_command_gets_an_html_reply_to_its_message(bot: Running) -> None:
    asked = await bot.say("/remember Acme <b>pays</b> on the 1st & 15th")
    update = await bot.say("/recall acme")
    replies = bot.api.sent(OP)
    assert [m.reply_to for m in replies] == [
        asked["message"]["message_id"],
        update["message"]["message_id"],
    ]
    assert all(m.parse_mode == "HTML" for m in replies)
    assert "Acme &lt;b&gt;pays&lt;/b&gt; on the 1st &amp; 15th" in replies[1].text
    assert bot.api.webhook is None and bot.api.calls_of("deleteWebhook")


async def test_replies_stay_in_the_forum_topic_and_group_commands_may_name_the_bot(
    bot: Running,
) -> None:
    group = -100123
    await bot.say("/help@soloops_test_bot remember", chat_id=group, thread_id=7)
    await bot.say("/help@some_other_bot", chat_id=group, thread_id=7)
    (reply,) = bot.api.sent(group)
    assert reply.thread_id == 7
    assert reply.text.startswith("/remember")
    assert await bot.count("SELECT COUNT(*) FROM inbound") == 1  # the other bot's is not ours


async def test_stranger_gets_one_short_refusal_and_nothing_runs(bot: Running) -> None:
    await bot.say("/remember secret plans", user=STRANGER)
    await bot.say("/notes", user=STRANGER)
    (refusal,) = bot.api.sent(STRANGER)
    assert refusal.text == "Sorry, this bot only works for its operator."
    assert await bot.count("SELECT COUNT(*) FROM tasks") == 0
    assert await bot.count("SELECT COUNT(*) FROM memories") == 0
    refused = await bot.runtime.events.query(kind="message.refused")
    assert [e.actor for e in refused] == [f"telegram:{STRANGER}"] * 2


async def test_without_operators_the_refusal_tells_the_user_their_id(
    settings: Settings, telegram_api: TelegramEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(settings, telegram_api, operators=[]) as bot:
        await bot.say("/start", user=31337)
    (refusal,) = telegram_api.sent(31337)
    assert "Your Telegram user id is 31337" in refusal.text
    assert "SOLOOPS_TELEGRAM__OPERATORS=[31337]" in refusal.text
    assert "SOLOOPS_TELEGRAM__OPERATORS=[31337]" in caplog.text


async def test_approval_card_press_applies_once_and_edits_the_card(bot: Running) -> None:
    await bot.say("/confirm pay Acme 120 EUR")
    card = bot.card()
    assert card.text.startswith("<b>Approval needed (ops)</b>\nConfirm: pay Acme 120 EUR")
    approve, reject = card.buttons
    assert (approve["text"], reject["text"]) == ("Approve", "Reject")
    assert all(len(b["callback_data"].encode()) <= CALLBACK_DATA_MAX for b in card.buttons)

    assert await bot.press(approve["callback_data"], card) == "Approved."
    await bot.api.wait_for(lambda: card.edits == 1, what="card edited")
    # The name Telegram gives with the press, the time in the operator's zone (UTC here).
    assert re.match(r"<b>Approved by Ada at \d\d:\d\d UTC on \d{4}-\d\d-\d\d</b>", card.text)
    assert card.buttons == []
    confirmed = bot.api.sent(OP)[-1]
    assert confirmed.text == "Confirmed by Ada: pay Acme 120 EUR"  # by name, not the id
    assert await bot.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'") == 1

    # A second press (the button is gone, but an old client may still show it):
    assert (await bot.press(reject["callback_data"], card)).startswith(
        "Already approved by Ada at "
    )
    # ... and a stranger's press change nothing.
    assert await bot.press(approve["callback_data"], card, user=STRANGER) == "Not allowed."
    await bot.runtime.settle()
    assert card.edits == 1
    assert len(await bot.runtime.events.query(kind="approval.decided")) == 1
    assert bot.api.sent(STRANGER) == []  # a press gets its answer, not a chat message


async def test_forged_callback_data_is_rejected(bot: Running) -> None:
    await bot.say("/confirm delete the old site")
    card = bot.card()
    real = card.buttons[0]["callback_data"]
    for forged in (real[:-2] + ("AA" if not real.endswith("AA") else "BB"), "approve:1"):
        assert await bot.press(forged, card) == "This button is not valid any more."
    assert await bot.count("SELECT COUNT(*) FROM approvals WHERE state = 'pending'") == 1
    assert card.edits == 0


async def test_buttons_work_after_a_restart(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with running(settings, telegram_api) as bot:
        await bot.say("/confirm renew the domain")
        card = bot.card()
    assert await _task_state(settings) == TaskState.WAITING_APPROVAL
    async with running(settings, telegram_api) as bot:
        assert await bot.press(card.buttons[1]["callback_data"], card) == "Rejected."
        await telegram_api.wait_for(lambda: card.edits == 1, what="card edited")
        assert card.text.startswith("<b>Rejected by Ada at ")
        await telegram_api.wait_for(
            lambda: telegram_api.sent(OP)[-1].text.startswith("Not confirmed (rejected by Ada)"),
            what="the task's reply",
        )
        state = await bot.runtime.store.scalar("SELECT state FROM approvals")
        assert state == ApprovalState.REJECTED


async def _task_state(settings: Settings) -> str:
    async with Store.open(settings.database_path) as store:
        return str(await store.scalar("SELECT state FROM tasks"))


async def test_rate_limited_reply_is_delivered_after_the_wait(bot: Running) -> None:
    # Two 429s: PTB's rate limiter waits out the first, the outbox the second.
    bot.api.fail_next(
        "sendMessage",
        Failure(429, "Too Many Requests: retry after 1", retry_after=1),
        Failure(429, "Too Many Requests: retry after 1", retry_after=1),
    )
    started = time.monotonic()
    update = bot.api.send_text(OP, "/remember rate limits are real")
    await bot.api.wait_for(lambda: bot.api.sent(OP), within_s=10, what="the reply")
    assert time.monotonic() - started >= 2.0
    assert bot.api.sent(OP)[0].reply_to == update["message"]["message_id"]
    assert len(bot.api.calls_of("sendMessage")) == 3
    (retry,) = await bot.runtime.events.query(kind="reply.retry")
    assert retry.payload["wait_s"] == 1.0


async def test_server_errors_are_retried(bot: Running) -> None:
    bot.api.fail_next("sendMessage", Failure(502, "Bad Gateway"))
    await bot.say("/notes")
    await bot.api.wait_for(lambda: bot.api.sent(OP), within_s=10, what="the reply")
    assert len(await bot.runtime.events.query(kind="reply.retry")) == 1


async def test_a_reply_refused_for_good_is_a_visible_failure(bot: Running) -> None:
    bot.api.unknown_chats.add(OP)
    await bot.say("/notes")
    (failed,) = await bot.runtime.events.query(kind="reply.failed")
    assert "chat not found" in failed.payload["error"].lower()
    assert failed.payload["attempts"] == 1
    bot.api.unknown_chats.clear()
    await bot.say("/status")
    assert "1 failed" in bot.api.sent(OP)[-1].text


async def test_a_redelivered_update_is_processed_once(bot: Running) -> None:
    update = await bot.say("/remember only once")
    bot.api.redeliver(update)
    await bot.api.wait_for(lambda: bot.api.redelivered(update), what="redelivery taken")
    await bot.runtime.settle()
    assert await bot.count("SELECT COUNT(*) FROM memories") == 1
    assert len(bot.api.sent(OP)) == 1
    assert len(await bot.runtime.events.query(kind="message.duplicate")) == 1


async def test_long_replies_are_split_on_lines(bot: Running) -> None:
    text = "\n".join(f"line {i:04d} " + "x" * 90 for i in range(120))  # ~12 000 characters
    async with bot.runtime.store.write() as tx:
        await OutboxRepo(bot.runtime.store).enqueue(
            tx,
            platform="telegram",
            chat_id=str(OP),
            thread_id=None,
            reply_to="1:5",
            body=Reply(text=text).to_json(),
            now=datetime.now(UTC),
        )
    await bot.runtime.outbox.drain()
    parts = bot.api.sent(OP)
    assert len(parts) == 3
    assert all(len(p.text) <= 4096 for p in parts)
    assert "\n".join(p.text for p in parts) == text
    assert [p.reply_to for p in parts] == [5, None, None]


WEBHOOK_SECRET = "s3cret-token_ok"


@asynccontextmanager
async def webhook_bot(settings: Settings, api: TelegramEmulator) -> AsyncIterator[Running]:
    """soloops in webhook mode, on a server of its own (the CLI shares one instead)."""
    port = _free_port()
    async with running(
        settings,
        api,
        mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram",
        webhook_listen="127.0.0.1",
        webhook_port=port,
        webhook_path="telegram",
        webhook_secret=WEBHOOK_SECRET,
    ) as bot:
        yield bot


async def test_webhook_mode_stores_then_answers_200_and_checks_the_secret(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with webhook_bot(settings, telegram_api) as bot:
        assert telegram_api.webhook is not None
        assert telegram_api.webhook["secret_token"] == WEBHOOK_SECRET
        update = telegram_api.send_text(OP, "/remember via webhook")
        assert telegram_api.pending_updates() == 0  # Telegram posts it; nobody polls
        for forged in ("", "wrong"):
            assert await telegram_api.post_webhook(update, secret=forged) == 403
        assert await bot.count("SELECT COUNT(*) FROM inbound") == 0
        assert await telegram_api.post_webhook(update) == 200
        # Stored when answered: the 200 came after the message and its task were written.
        assert await bot.count("SELECT COUNT(*) FROM inbound") == 1
        assert await bot.count("SELECT COUNT(*) FROM tasks") == 1
        assert await telegram_api.post_webhook(update) == 200  # a redelivery: a duplicate
        await bot.runtime.settle()
        (reply,) = telegram_api.sent(OP)
        assert reply.text.startswith("Remembered #1")
        assert await bot.count("SELECT COUNT(*) FROM memories") == 1
        assert await bot.count("SELECT COUNT(*) FROM tasks") == 1
        assert telegram_api.calls_of("getUpdates") == []
        assert bot.front_end.health_state() == (True, "webhook at /telegram")


async def test_webhook_mode_answers_5xx_when_it_cannot_store_so_telegram_retries(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with webhook_bot(settings, telegram_api) as bot:
        update = telegram_api.send_text(OP, "/remember kept despite a bad disk")
        writer = bot.runtime.store._writer  # the disk turning read-only under soloops
        assert writer is not None
        writer.execute("PRAGMA query_only = 1")
        assert await telegram_api.post_webhook(update) == 503
        ok, detail = bot.front_end.health_state()
        assert (ok, detail) == (False, "could not store an update (OperationalError)")
        writer.execute("PRAGMA query_only = 0")
        assert await telegram_api.post_webhook(update) == 200  # Telegram's retry
        await bot.runtime.settle()
        assert await bot.count("SELECT COUNT(*) FROM memories") == 1
        assert bot.front_end.health_state()[0] is True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_starts_telegram_when_a_token_is_set(settings: Settings) -> None:
    assert configured_front_ends(settings) == []
    with_token = settings.model_copy(
        update={"telegram": TelegramSettings.model_validate({"token": "1:x", "operators": [1]})}
    )
    (front_end,) = configured_front_ends(with_token)
    assert front_end.platform == "telegram"
    assert front_end.operators == frozenset({"1"})
    assert front_end.sender.platform == "telegram"


async def test_a_refused_token_stops_the_start_with_a_fix(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    with pytest.raises(ConfigError, match="SOLOOPS_TELEGRAM__TOKEN"):
        async with running(settings, telegram_api, token="999:not-the-token"):
            pass


def test_doctor_reports_telegram_without_calling_it(settings: Settings) -> None:
    assert _telegram(settings).level == "ok"
    lonely = TelegramSettings.model_validate({"token": "1:x"})
    check = _telegram(settings.model_copy(update={"telegram": lonely}))
    assert (check.level, "SOLOOPS_TELEGRAM__OPERATORS" in check.fix) == ("warn", True)
    ready = TelegramSettings.model_validate({"token": "1:x", "operators": [5]})
    assert _telegram(settings.model_copy(update={"telegram": ready})).detail.endswith("[5]")


async def test_a_short_outage_at_start_is_waited_out(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    telegram_api.fail_next("getMe", Failure(502, "Bad Gateway"))
    async with running(settings, telegram_api) as bot:
        await bot.say("/notes")
    assert len(telegram_api.calls_of("getMe")) == 2
    assert telegram_api.sent(OP)
