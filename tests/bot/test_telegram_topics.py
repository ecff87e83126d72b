"""Forum topics bound to features, end to end: real PTB over HTTP to the loopback
emulator (a forum supergroup with topics), real SQLite, the real gateway, coordinator,
scheduler and outbox, the SMTP sink for the invoice's email."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot
from telegram.error import BadRequest

from bot.runtime import Runtime, open_runtime
from bot.telegram import TelegramFrontEnd
from config import Settings, TelegramSettings
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from memory.tasks import TaskState
from tests.emulators.smtp import SmtpSink
from tests.emulators.telegram import GENERAL_TOPIC, JSON, StoredMessage, TelegramEmulator
from tests.emulators.transcribe import TranscribeServer

OP = 4242
FORUM = -1001500
START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # Mon 07:00 in Berlin
SELLER = {
    "seller_name": "Solo Studio",
    "seller_address": "Hauptstr. 1\n10115 Berlin",
    "tax_id": "DE123456789",
    "payment_details": "IBAN DE02 1203 0000 0000 2020 51",
}


@dataclass
class Forum:
    """soloops on Telegram, in a forum with a Billing and a Leads topic."""

    runtime: Runtime
    api: TelegramEmulator
    billing: int
    leads: int

    async def say(self, text: str, topic: int | None, **kwargs: Any) -> JSON:
        """Say ``text`` in ``topic`` (None: General); wait until it and its work settled."""
        update = self.api.send_text(OP, text, chat_id=FORUM, thread_id=topic, **kwargs)
        await self.api.wait_for(lambda: self.api.confirmed(update), what="update confirmed")
        await self.runtime.settle()
        return update

    async def voice(self, audio: bytes, topic: int | None) -> None:
        """Send a voice note in ``topic``; wait until it and its work settled."""
        update = self.api.send_voice(OP, audio, chat_id=FORUM, thread_id=topic)
        await self.api.wait_for(lambda: self.api.confirmed(update), what="update confirmed")
        await self.runtime.settle()

    def in_topic(self, topic: int | None) -> list[StoredMessage]:
        """What soloops said in ``topic`` (None: without a thread id, i.e. General)."""
        return [m for m in self.api.sent(FORUM) if m.thread_id == topic]

    def last(self, topic: int | None) -> str:
        return self.in_topic(topic)[-1].text

    async def count(self, sql: str) -> int:
        return int(await self.runtime.store.scalar(sql))


def _settings(home: Path, sink: SmtpSink | None = None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "timezone": "Europe/Berlin",
        "digest": {"enabled": False},
        "invoices": SELLER,
        **extra,
    }
    if sink is not None:
        values["email"] = sink.settings()
    return Settings.model_validate(values)


@asynccontextmanager
async def forum(
    settings: Settings,
    api: TelegramEmulator,
    clock: ManualClock | None,
    embedder: SentenceTransformerEmbedder,
) -> AsyncIterator[Forum]:
    """What ``soloops run`` does with a Telegram token, minus signals."""
    if FORUM not in api.forums:
        api.create_forum(FORUM)
        api.create_topic(FORUM, "Billing")
        api.create_topic(FORUM, "Leads")
    billing, leads = (t for t, name in api.forums[FORUM].items() if name in ("Billing", "Leads"))
    telegram = TelegramSettings.model_validate(
        {
            "token": api.token,
            "base_url": api.base_url,
            "base_file_url": api.base_file_url,
            "operators": [OP],
            "poll_timeout_s": 1,
        }
    )
    front_end = TelegramFrontEnd(telegram)
    async with open_runtime(
        settings.model_copy(update={"telegram": telegram}),
        [front_end.sender],
        operators={front_end.platform: front_end.operators},
        clock=clock,
        embedder=embedder,
    ) as runtime:
        await front_end.start(runtime)
        try:
            yield Forum(runtime, api, billing, leads)
        finally:
            await front_end.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def test_a_billing_topic_bound_to_invoices_makes_plain_text_an_invoice_approved_there(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    async with (
        SmtpSink() as sink,
        forum(_settings(tmp_path / "home", sink), telegram_api, clock, embedder) as f,
    ):
        await f.say("/bind invoices", f.billing)
        assert f.last(f.billing).startswith("This topic is now bound to invoices")
        await f.say("Acme 1200 EUR October consulting to billing@acme.test", f.billing)
        card = next(m for m in reversed(f.in_topic(f.billing)) if m.buttons)
        assert card.text.startswith("<b>Approval needed (invoices)</b>"), card.text
        assert "INV-2026-0001" in card.text
        assert f.in_topic(None) == [] and f.in_topic(f.leads) == []
        [bound] = await f.runtime.events.query(kind="message.bound")
        assert bound.payload == {"feature": "invoices", "command": "/invoice"}

        answers = len(f.api.callback_answers)
        press = f.api.press(OP, card.buttons[0]["callback_data"], card)
        await f.api.wait_for(lambda: f.api.confirmed(press), what="press confirmed")
        await f.runtime.settle()
        await f.api.wait_for(lambda: len(f.api.callback_answers) > answers, what="answer")
        await f.api.wait_for(lambda: card.edits >= 1, what="card decided")
        assert card.text.startswith("<b>Approved by Ada")
        [mail] = sink.messages
        assert mail.rcpt_tos == ["billing@acme.test"]
        assert f.last(f.billing).startswith("Sent INV-2026-0001")
        assert f.in_topic(None) == []  # nothing strayed into General


async def test_leads_topic_show_unbind_and_commands_in_a_bound_topic(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    async with forum(_settings(tmp_path / "home"), telegram_api, clock, embedder) as f:
        await f.say("/bind", f.leads)
        assert f.last(f.leads).startswith("This topic is not bound")
        await f.say("/bind leads", f.leads)
        await f.say("Jane Doe jane@acme.com wants a site", f.leads)
        assert await f.count("SELECT COUNT(*) FROM leads") == 1
        assert "Jane Doe" in f.last(f.leads)

        await f.say("/bind", f.leads)
        shown = f.last(f.leads)
        assert shown.startswith("This topic is bound to leads: plain text here is read as /lead")
        assert "/unbind" in shown

        await f.say("/leads", f.leads)  # a command still works as typed
        assert "Jane Doe" in f.last(f.leads)
        assert await f.count("SELECT COUNT(*) FROM tasks WHERE kind = 'leads'") == 1

        await f.say("/unbind", f.leads)
        assert f.last(f.leads).startswith("This topic is no longer bound to leads")
        assert await f.count("SELECT COUNT(*) FROM bindings") == 0
        await f.say("Bob Roe bob@roe.test wants a shop", f.leads)
        assert await f.count("SELECT COUNT(*) FROM tasks WHERE kind = 'free_text'") == 1
        assert len(await f.runtime.events.query(kind="message.bound")) == 1  # only Jane's
        kinds = [e.kind for e in await f.runtime.events.query() if e.kind.startswith("binding.")]
        assert kinds == ["binding.set", "binding.removed"]


async def test_a_binding_survives_a_restart_and_is_per_topic(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    settings = _settings(tmp_path / "home")
    async with forum(settings, telegram_api, clock, embedder) as f:
        await f.say("/bind leads", f.leads)
    async with forum(settings, telegram_api, clock, embedder) as f:
        await f.say("Jane Doe jane@acme.com wants a site", f.leads)
        assert await f.count("SELECT COUNT(*) FROM leads") == 1
        await f.say("Jane Doe jane@acme.com wants a site", f.billing)  # not bound: the router
        await f.say("/bind", None)
        assert f.last(None).startswith("This topic is not bound")  # General is its own topic
        assert len(await f.runtime.events.query(kind="message.bound")) == 1
        # The Billing text went to the router (which may make it a lead by its meaning).
        assert len(await f.runtime.events.query(kind="router.decided")) == 1


async def test_binding_an_unknown_feature_or_one_without_free_text_is_refused(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    embedder: SentenceTransformerEmbedder,
) -> None:
    # The system clock: a rejection's reply is queued at the update's arrival (real time).
    async with forum(_settings(tmp_path / "home"), telegram_api, None, embedder) as f:
        await f.say("/bind biling", f.billing)
        said = f.last(f.billing)
        assert "There is no feature 'biling' to bind" in said
        assert "invoices (/invoice)" in said and "leads (/lead)" in said
        await f.say("/bind ops", f.billing)
        assert "ops has no free-text command to bind to" in f.last(f.billing)
        await f.say("/bind invoices leads", f.billing)
        await f.api.wait_for(
            lambda: "/bind takes one feature name" in f.last(f.billing), what="the usage"
        )
        assert await f.count("SELECT COUNT(*) FROM bindings") == 0
        refused = await f.runtime.events.query(kind="task.refused")
        assert len(refused) == 2
        assert await f.count(f"SELECT COUNT(*) FROM tasks WHERE state = '{TaskState.REFUSED}'") == 2


async def test_the_general_topic_is_answered_without_its_thread_id_and_typing_keeps_it(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    async with forum(_settings(tmp_path / "home"), telegram_api, clock, embedder) as f:
        asked = await f.say("/help bind", None)
        # Telegram's quirk: a reply in General names the replied-to message as its thread.
        await f.say("/help unbind", None, reply_to=asked["message"]["message_id"])
        await f.say("/help", f.billing)
        general = f.in_topic(None)
        assert [m.text.split()[0] for m in general] == ["/bind", "/unbind"]
        assert len(f.in_topic(f.billing)) == 1
        await f.api.wait_for(lambda: len(f.api.chat_actions) == 3, what="typing actions")
        assert sorted((a["thread_id"] or 0) for a in f.api.chat_actions) == sorted(
            [GENERAL_TOPIC, GENERAL_TOPIC, f.billing]
        )
        assert {a["action"] for a in f.api.chat_actions} == {"typing"}
        # Nothing was refused with "message thread not found": every reply went out once.
        assert await f.count("SELECT COUNT(*) FROM outbox WHERE state != 'sent'") == 0


async def test_digest_reminders_and_the_general_home_reach_their_topics(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    telegram_api.create_forum(FORUM)
    billing = telegram_api.create_topic(FORUM, "Billing")
    telegram_api.create_topic(FORUM, "Leads")
    settings = _settings(
        tmp_path / "home",
        digest={"to": [f"telegram:{FORUM}:{billing}", f"telegram:{FORUM}:{GENERAL_TOPIC}"]},
    )
    async with forum(settings, telegram_api, clock, embedder) as f:
        await f.say("/remind in 20 minutes call Bob", f.leads)
        clock.set(datetime(2026, 11, 2, 6, 25, tzinfo=UTC))
        await f.runtime.scheduler.run_due()
        await f.runtime.settle()
        await f.api.wait_for(lambda: "call Bob" in f.last(f.leads), what="the reminder")
        assert not any("call Bob" in m.text for m in f.in_topic(f.billing) + f.in_topic(None))

        clock.set(datetime(2026, 11, 2, 7, 0, tzinfo=UTC))  # 08:00 in Berlin
        await f.runtime.scheduler.run_due()
        await f.runtime.settle()

        def digests(topic: int | None) -> int:
            return sum("Daily digest" in m.text for m in f.in_topic(topic))

        await f.api.wait_for(lambda: digests(f.billing) + digests(None) == 2, what="digests")
        assert (digests(f.billing), digests(None), digests(f.leads)) == (1, 1, 0)


async def test_the_emulator_refuses_general_and_unknown_threads_as_telegram_does(
    telegram_api: TelegramEmulator,
) -> None:
    telegram_api.create_forum(FORUM)
    topic = telegram_api.create_topic(FORUM, "Billing")
    async with Bot(telegram_api.token, base_url=telegram_api.base_url) as bot:
        for thread in (GENERAL_TOPIC, topic + 5):
            with pytest.raises(BadRequest, match="thread not found"):
                await bot.send_message(FORUM, "x", message_thread_id=thread)
        with pytest.raises(BadRequest, match="thread not found"):
            await bot.send_chat_action(FORUM, "typing", message_thread_id=topic + 5)
        await bot.send_chat_action(FORUM, "typing", message_thread_id=GENERAL_TOPIC)
        sent = await bot.send_message(FORUM, "in the topic", message_thread_id=topic)
        assert (sent.message_thread_id, sent.is_topic_message) == (topic, True)
        await bot.send_message(FORUM, "in General")
    assert [(m.text, m.thread_id) for m in telegram_api.sent(FORUM)] == [
        ("in the topic", topic),
        ("in General", None),
    ]
    assert telegram_api.chat_actions == [
        {"chat_id": FORUM, "action": "typing", "thread_id": GENERAL_TOPIC}
    ]


async def test_a_voice_note_in_a_bound_topic_goes_to_the_bound_feature(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    audio = b"OggS\x00a-spoken-enquiry"
    spoken = "Jane Doe jane@acme.com wants a site."
    async with TranscribeServer(transcripts={audio: spoken}) as server:
        settings = _settings(tmp_path / "home", transcribe=server.settings())
        async with forum(settings, telegram_api, clock, embedder) as f:
            await f.say("/bind leads", f.leads)
            await f.voice(audio, f.leads)
            heard, saved = [m.text for m in f.in_topic(f.leads)][-2:]
            assert heard == f"Heard: “{spoken}”"
            assert saved.startswith("Lead #1 saved: new: Jane Doe &lt;jane@acme.com&gt;")
            assert await f.count("SELECT COUNT(*) FROM leads") == 1
            # Read as typed in the topic: straight to /lead, never guessed by the router.
            rerouted = [e.payload for e in await f.runtime.events.query(kind="task.rerouted")]
            assert [(p["from"], p["kind"]) for p in rerouted] == [("voice", "lead_chat")]


async def test_an_invoice_spoken_in_billing_gets_its_card_and_waits_for_a_tap(
    tmp_path: Path,
    telegram_api: TelegramEmulator,
    clock: ManualClock,
    embedder: SentenceTransformerEmbedder,
) -> None:
    audio = b"OggS\x00a-spoken-invoice"
    spoken = "Acme 1200 EUR October consulting to billing@acme.test"
    async with SmtpSink() as sink, TranscribeServer(transcripts={audio: spoken}) as server:
        settings = _settings(tmp_path / "home", sink, transcribe=server.settings())
        async with forum(settings, telegram_api, clock, embedder) as f:
            await f.say("/bind invoices", f.billing)
            await f.voice(audio, f.billing)
            card = next(m for m in reversed(f.in_topic(f.billing)) if m.buttons)
            assert card.text.startswith("<b>Approval needed (invoices)</b>"), card.text
            assert "INV-2026-0001" in card.text and "1,200.00" in card.text
            assert sink.messages == []  # nothing leaves before the tap
            press = f.api.press(OP, card.buttons[0]["callback_data"], card)
            await f.api.wait_for(lambda: f.api.confirmed(press), what="press confirmed")
            await f.runtime.settle()
            await f.api.wait_for(lambda: len(sink.messages) == 1, what="the invoice emailed")
            assert sink.messages[0].rcpt_tos == ["billing@acme.test"]
