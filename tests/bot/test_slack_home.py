"""Slack App Home and edit-before-approve end to end: signed requests over real HTTP
into the real slack-bolt app, views into the loopback Slack emulator, emails into the
SMTP sink, webhooks into the provider emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agents.delivery import queue_reply
from agents.intents import Conversation
from agents.replies import Reply
from bot.runtime import Runtime, open_runtime
from bot.slack import EVENTS_PATH, SlackFrontEnd
from bot.slack_views import EDIT_BLOCK
from config import HttpSettings, Settings, SlackSettings
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from memory.outbox import OutboxRepo
from tests.bot.test_slack import CHANNEL, OPERATOR, SECRET, STRANGER
from tests.emulators.provider import Provider
from tests.emulators.slack import (
    TOKEN,
    Call,
    SlackClient,
    SlackEmulator,
    click_payload,
    home_click_payload,
    slack_emulator,
    view_submission_payload,
)
from tests.emulators.smtp import SmtpSink

DM = "D0001"


@dataclass
class HomeRig:
    slack: SlackEmulator
    client: SlackClient
    runtime: Runtime
    front: SlackFrontEnd
    clock: ManualClock

    def publishes(self, user: str = OPERATOR) -> list[Call]:
        return [c for c in self.slack.called("views.publish") if c.args["user_id"] == user]

    def posts(self, **match: Any) -> list[Call]:
        return [
            c
            for c in self.slack.called("chat.postMessage")
            if all(c.args.get(k) == v for k, v in match.items())
        ]

    async def home(self, check: Any, what: str) -> str:
        """Wait until the operator's Home view satisfies ``check(text)``; its text."""
        await self.slack.wait_for(lambda: check(self.slack.home_of(OPERATOR)), what=what, within=30)
        return self.slack.home_of(OPERATOR)

    def home_buttons(self) -> list[dict[str, Any]]:
        view = self.slack.homes[OPERATOR]
        return [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]

    def card_ts(self, call: Call) -> str:
        return next(
            ts for (_, ts), m in self.slack.messages.items() if m["blocks"] == call.args["blocks"]
        )

    async def kinds(self, kind: str) -> list[str]:
        return [e.kind for e in await self.runtime.events.query(kind=kind)]


def home_settings(tmp_path: Path, api_url: str, **extra: Any) -> Settings:
    return Settings(
        home=tmp_path / "home",
        slack=SlackSettings(
            bot_token=TOKEN,
            signing_secret=SECRET,
            api_base_url=api_url,
            operators=[OPERATOR],
            home_refresh_s=0,  # every change refreshes: the tests wait on the view itself
        ),
        http=HttpSettings(host="127.0.0.1", port=0),
        digest={"enabled": False},
        **extra,
    )


@asynccontextmanager
async def home_rig(
    settings: Settings,
    slack: SlackEmulator,
    embedder: SentenceTransformerEmbedder,
    clock: ManualClock | None = None,
) -> AsyncIterator[HomeRig]:
    clock = clock or ManualClock(datetime.now(UTC))
    front = SlackFrontEnd(settings)
    async with open_runtime(
        settings,
        [front.sender],
        operators={"slack": front.operators},
        embedder=embedder,
        clock=clock,
    ) as runtime:
        await front.start(runtime)
        try:
            assert front.address is not None
            host, port = front.address
            async with aiohttp.ClientSession() as session:
                url = f"http://{host}:{port}{EVENTS_PATH}"
                yield HomeRig(slack, SlackClient(url, SECRET, session), runtime, front, clock)
        finally:
            await front.stop()


@pytest.fixture
async def rig(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> AsyncIterator[HomeRig]:
    async with (
        slack_emulator() as slack,
        home_rig(home_settings(tmp_path, slack.api_url), slack, embedder) as rig,
    ):
        yield rig


async def confirm_card(rig: HomeRig, what: str = "ship the newsletter") -> Call:
    await rig.client.command(f"confirm {what}", user=OPERATOR)
    found = await rig.slack.wait_for(
        lambda: [c for c in rig.posts(channel=CHANNEL) if "Approval needed" in c.args["text"]],
        what="the card",
    )
    return found[-1]


async def test_home_is_published_when_opened_with_the_cards_own_buttons(rig: HomeRig) -> None:
    card = await confirm_card(rig)
    approve, reject = card.args["blocks"][-1]["elements"]
    status, _ = await rig.client.home_opened(OPERATOR, event_id="EvHome1")
    assert status == 200
    text = await rig.home(lambda t: "ship the newsletter" in t, "the Home with the card")
    assert "Needs you now" in text and "Decide (1)" in text
    assert "Last digest" in text
    buttons = rig.home_buttons()
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (approve["action_id"], approve["value"]),
        (reject["action_id"], reject["value"]),
    ]


async def test_approve_on_the_home_tab_runs_once_and_the_home_refreshes(rig: HomeRig) -> None:
    card = await confirm_card(rig)
    card_ts = rig.card_ts(card)
    await rig.client.home_opened(OPERATOR, event_id="EvHome1")
    await rig.home(lambda t: "ship the newsletter" in t, "the Home with the card")
    approve = rig.home_buttons()[0]
    view_id = rig.slack.homes[OPERATOR]["id"]
    press = home_click_payload(user=OPERATOR, element=approve, view_id=view_id)

    status, _ = await rig.client.interaction(press)
    assert status == 200
    # The press's outcome shows on top of the refreshed tab, which no longer has the card.
    text = await rig.home(lambda t: "Approved." in t, "the press's outcome")
    assert "ship the newsletter" not in text and "Nothing needs you right now" in text
    update = await rig.slack.wait_for(lambda: rig.slack.called("chat.update"))
    assert update[0].args["ts"] == card_ts  # the card in the channel, decided
    assert update[0].args["text"].startswith(f"Approved by name-{OPERATOR}")
    await rig.slack.wait_for(
        lambda: [c for c in rig.posts() if c.args["text"].startswith("Confirmed by")]
    )

    # The same press again (a stale tab), and a stranger's: nothing more runs.
    press["actions"][0]["action_ts"] = "1.000002"
    await rig.client.interaction(press)
    await rig.home(lambda t: "Already approved" in t, "the repeat's answer")
    await rig.client.interaction(home_click_payload(user=STRANGER, element=approve, view_id="V9"))
    await rig.runtime.settle()
    assert await rig.kinds("approval.decided") == ["approval.decided"]
    assert await rig.kinds("confirm.approved") == ["confirm.approved"]
    assert await rig.kinds("message.refused") == ["message.refused"]
    assert len(rig.slack.called("chat.update")) == 1


async def test_a_stranger_opening_the_home_tab_gets_the_short_view_once(rig: HomeRig) -> None:
    await confirm_card(rig)
    # Opening the Messages tab publishes nothing.
    await rig.client.event(
        {"type": "app_home_opened", "user": STRANGER, "channel": DM, "tab": "messages"},
        event_id="EvS0",
    )
    await rig.client.home_opened(STRANGER, event_id="EvS1")
    await rig.slack.wait_for(lambda: rig.publishes(STRANGER), what="the stranger's view")
    await rig.client.home_opened(STRANGER, event_id="EvS2")
    await rig.front.home.flush()
    assert len(rig.publishes(STRANGER)) == 1
    text = rig.slack.home_of(STRANGER)
    assert "works for its operator" in text
    assert "ship the newsletter" not in text
    assert rig.slack.homes[STRANGER]["blocks"][0]["type"] == "section"
    assert all(b["type"] != "actions" for b in rig.slack.homes[STRANGER]["blocks"])


async def test_a_burst_of_changes_is_one_more_publish(rig: HomeRig) -> None:
    await rig.client.home_opened(OPERATOR, event_id="EvB0")
    await rig.slack.wait_for(lambda: rig.publishes(), what="the first Home")
    await rig.front.home.flush()
    published = len(rig.publishes())
    rig.slack.hold("views.publish")
    rig.front.home.changed()
    await rig.slack.wait_for(lambda: rig.slack.in_flight.get("views.publish"), what="in flight")
    outbox = OutboxRepo(rig.runtime.store)
    home = Conversation(platform="slack", chat_id=DM, user_id=OPERATOR)
    for n in range(50):  # fifty separate commits, each announced by the store
        async with rig.runtime.store.write() as tx:
            await queue_reply(outbox, tx, home, Reply(text=f"note {n}"), now=rig.clock.now())
    rig.slack.release("views.publish")
    await rig.front.home.flush()
    await rig.runtime.settle()
    await rig.front.home.flush()
    assert len(rig.publishes()) == published + 2  # the one in flight, and one for the fifty


async def test_a_failed_publish_fails_nothing_and_the_next_change_retries(rig: HomeRig) -> None:
    rig.slack.fail("views.publish", 1, status=500)
    card = await confirm_card(rig, "first")
    await rig.slack.wait_for(lambda: rig.front.home.failures == 1, what="the failed publish")
    assert card.args["blocks"][-1]["type"] == "actions"  # the task that changed it went on
    await confirm_card(rig, "second")
    text = await rig.home(lambda t: "second" in t, "the retried Home")
    assert "first" in text and "Decide (2)" in text


async def test_a_failure_shows_on_the_home_with_its_retry_card(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    async with slack_emulator() as slack:
        settings = home_settings(tmp_path, slack.api_url, hooks={"crm": provider.hook()})
        async with home_rig(settings, slack, embedder) as rig:
            await rig.client.home_opened(OPERATOR, event_id="EvF0")
            await rig.home(lambda t: "Nothing needs you right now" in t, "the empty Home")
            await rig.client.command("policy ops.hook auto", user=OPERATOR)
            await rig.slack.wait_for(lambda: len(rig.posts(channel=CHANNEL)) >= 2)
            provider.fail_next(1, status=403, body="bad signature")
            await rig.client.command("hook crm broken", user=OPERATOR)
            text = await rig.home(lambda t: "Still failing" in t, "the failure on the Home")
            assert "/runbook webhook-rejected" in text
            labels = [b["text"]["text"] for b in rig.home_buttons()]
            assert labels == ["Retry", "Discard"]


# --- edit before approve ------------------------------------------------------------


@asynccontextmanager
async def lead_rig(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[tuple[HomeRig, SmtpSink, Call]]:
    """A follow-up email waiting for approval in the operator's DM."""
    clock = ManualClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    async with SmtpSink() as sink, slack_emulator() as slack:
        settings = home_settings(
            tmp_path, slack.api_url, email=sink.settings(), followups={"after": "2d"}
        )
        async with home_rig(settings, slack, embedder, clock) as rig:
            await rig.client.event(
                dm("lead Jane Doe jane@acme.com wants a new site"), event_id="EvL1"
            )
            await rig.slack.wait_for(lambda: rig.posts(channel=DM), what="the lead's answer")
            await rig.runtime.settle()
            clock.advance(timedelta(days=2).total_seconds())
            await rig.runtime.scheduler.run_due()
            await rig.runtime.settle()
            cards = [c for c in rig.posts(channel=DM) if "Approval needed" in c.args["text"]]
            assert len(cards) == 1, [c.args["text"] for c in rig.posts()]
            yield rig, sink, cards[0]


def dm(text: str, ts: str = "1700000100.000100") -> dict[str, Any]:
    return {"type": "message", "channel": DM, "channel_type": "im", "user": OPERATOR,
            "text": text, "ts": ts}  # fmt: skip


async def press_edit(rig: HomeRig, card: Call, user: str = OPERATOR) -> tuple[int, str]:
    edit = card.args["blocks"][-1]["elements"][-1]
    payload = click_payload(
        user=user,
        value=edit["value"],
        channel=DM,
        message_ts=rig.card_ts(card),
        response_url=rig.slack.response_url(),
        action_id=edit["action_id"],
        trigger_id=rig.slack.trigger(user),
    )
    return await rig.client.interaction(payload)


async def test_edit_opens_a_modal_and_saving_it_makes_the_new_card_that_is_sent(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with lead_rig(tmp_path, embedder) as (rig, sink, card):
        card_ts = rig.card_ts(card)
        approve, _reject, edit = card.args["blocks"][-1]["elements"]
        assert (edit["action_id"], edit["text"]["text"]) == ("soloops.edit", "Edit")
        assert await press_edit(rig, card) == (200, "")
        [opened] = await rig.slack.wait_for(lambda: list(rig.slack.modals.values()))
        modal = opened["view"]
        field = next(b for b in modal["blocks"] if b["type"] == "input")
        assert field["element"]["multiline"] is True
        assert field["element"]["initial_value"].startswith("Hi Jane,")

        new_text = "Hi Jane,\nA quick call on Friday?\nAna"
        submit = view_submission_payload(modal, user=OPERATOR, values={EDIT_BLOCK: new_text})
        status, body = await rig.client.interaction(submit)
        assert (status, body) == (200, "")  # the modal closes
        await rig.runtime.settle()
        voided = await rig.slack.wait_for(lambda: rig.slack.called("chat.update"))
        assert voided[0].args["ts"] == card_ts
        assert voided[0].args["text"].startswith("Voided (the action changed)")
        new_cards = [
            c for c in rig.posts(channel=DM) if "Approval needed" in c.args["text"] and c != card
        ]
        assert len(new_cards) == 1 and "A quick call on Friday?" in new_cards[0].args["text"]
        assert any(c.args["text"].startswith("Edited: the new card is") for c in rig.posts())
        assert sink.messages == []

        # The old card's Approve does nothing; the new one sends the edited text.
        old_click = {"channel": DM, "response_url": rig.slack.response_url()}
        await rig.client.click(
            user=OPERATOR, value=approve["value"], message_ts=card_ts, **old_click
        )
        new_approve = new_cards[0].args["blocks"][-1]["elements"][0]
        await rig.client.click(
            user=OPERATOR,
            value=new_approve["value"],
            message_ts=rig.card_ts(new_cards[0]),
            **old_click,
        )
        await rig.slack.wait_for(lambda: sink.messages, what="the email", within=30)
        await rig.runtime.settle()
        [sent] = sink.messages
        body_text = sent.message.get_body(("plain",)).get_content()
        assert body_text.replace("\r\n", "\n").strip() == new_text
        states = await rig.runtime.store.fetchall("SELECT state FROM approvals ORDER BY id")
        assert [r["state"] for r in states] == ["voided", "approved"]


async def test_edit_refuses_a_stranger_and_a_decided_card_in_the_modal(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with lead_rig(tmp_path, embedder) as (rig, sink, card):
        # A stranger's press opens nothing.
        await press_edit(rig, card, user=STRANGER)
        await rig.slack.wait_for(lambda: rig.slack.responses, what="the refusal")
        assert "only the soloops operator" in rig.slack.responses[-1]["text"]
        assert rig.slack.modals == {}

        await press_edit(rig, card)
        [opened] = await rig.slack.wait_for(lambda: list(rig.slack.modals.values()))
        modal = opened["view"]

        # A stranger's submission is stored, refused, and changes nothing.
        status, body = await rig.client.interaction(
            view_submission_payload(modal, user=STRANGER, values={EDIT_BLOCK: "hijack"})
        )
        assert status == 200 and '"response_action":"errors"' in body.replace(" ", "")
        assert "only the soloops operator" in body
        assert await rig.kinds("message.refused") == ["message.refused"]

        # Empty text is answered under the field.
        status, body = await rig.client.interaction(
            view_submission_payload(modal, user=OPERATOR, values={EDIT_BLOCK: "  "})
        )
        assert status == 200 and "cannot be empty" in body

        # Decided meanwhile: the modal says so instead of closing.
        approve = card.args["blocks"][-1]["elements"][0]
        await rig.client.click(
            user=OPERATOR,
            value=approve["value"],
            channel=DM,
            message_ts=rig.card_ts(card),
            response_url=rig.slack.response_url(),
        )
        await rig.slack.wait_for(lambda: sink.messages, what="the email", within=30)
        status, body = await rig.client.interaction(
            view_submission_payload(modal, user=OPERATOR, values={EDIT_BLOCK: "too late"})
        )
        assert status == 200 and "already approved" in body
        await rig.runtime.settle()
        assert len(sink.messages) == 1
        assert "too late" not in sink.messages[0].message.get_body(("plain",)).get_content()
        states = await rig.runtime.store.fetchall("SELECT state FROM approvals ORDER BY id")
        assert [r["state"] for r in states] == ["approved"]
        assert len(await rig.kinds("slack.edit_refused")) == 3
