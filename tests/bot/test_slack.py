"""Slack end to end: signed requests over real HTTP into soloops, replies into the
loopback Slack Web API emulator, with the real slack-bolt and slack-sdk in between."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.runtime import Runtime, open_runtime
from bot.slack import EVENTS_PATH, SlackFrontEnd
from config import ConfigError, HttpSettings, Settings, SlackSettings
from memory.embedder import Embedder, SentenceTransformerEmbedder
from memory.outbox import DeliveryState
from tests.emulators.slack import (
    APP_TOKEN,
    TOKEN,
    Call,
    SlackClient,
    SlackEmulator,
    command_form,
    event_callback,
    slack_emulator,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OPERATOR = "UOPS0001"
STRANGER = "USTR0001"
CHANNEL = "C0001"


@dataclass
class Rig:
    slack: SlackEmulator
    client: SlackClient
    runtime: Runtime

    async def kinds(self, kind: str) -> list[str]:
        return [e.kind for e in await self.runtime.events.query(kind=kind)]

    def posts(self, **match: Any) -> list[Call]:
        return [
            c
            for c in self.slack.called("chat.postMessage")
            if all(c.args.get(k) == v for k, v in match.items())
        ]


def slack_settings(tmp_path: Path, api_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        slack=SlackSettings(
            bot_token=TOKEN,
            signing_secret=SECRET,
            api_base_url=api_url,
            operators=[OPERATOR],
        ),
        http=HttpSettings(host="127.0.0.1", port=0),
    )


@asynccontextmanager
async def slack_rig(
    settings: Settings, slack: SlackEmulator, *, embedder: Embedder | None = None
) -> AsyncIterator[Rig]:
    """soloops serving Slack in HTTP mode against ``slack``, with a signed client."""
    front = SlackFrontEnd(settings)
    async with open_runtime(
        settings, [front.sender], operators={"slack": front.operators}, embedder=embedder
    ) as runtime:
        await front.start(runtime)
        try:
            assert front.address is not None
            host, port = front.address
            async with aiohttp.ClientSession() as session:
                url = f"http://{host}:{port}{EVENTS_PATH}"
                yield Rig(slack, SlackClient(url, SECRET, session), runtime)
        finally:
            await front.stop()


@pytest.fixture
async def rig(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> AsyncIterator[Rig]:
    async with slack_emulator() as slack:
        # The session's model: a recall never waits for a fresh load under a deadline.
        settings = slack_settings(tmp_path, slack.api_url)
        async with slack_rig(settings, slack, embedder=embedder) as rig:
            yield rig


def dm(text: str, user: str = OPERATOR, ts: str = "1700000100.000100") -> dict[str, Any]:
    return {
        "type": "message",
        "channel": "D0001",
        "channel_type": "im",
        "user": user,
        "text": text,
        "ts": ts,
    }


def mention(text: str, user: str = OPERATOR, ts: str = "1700000200.000200") -> dict[str, Any]:
    return {"type": "app_mention", "channel": CHANNEL, "user": user, "text": text, "ts": ts}


async def test_slash_command_opens_a_thread_and_replies_in_it(rig: Rig) -> None:
    status, body = await rig.client.command("remember Acme pays on the 1st", user=OPERATOR)
    assert (status, body) == (200, "")
    reply = await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."), what="the reply")
    opener = rig.posts(channel=CHANNEL)[0]
    assert opener.args["text"] == f"<@{OPERATOR}> asked: /ops remember Acme pays on the 1st"
    assert "thread_ts" not in opener.args
    opener_ts = next(
        ts for (ch, ts), m in rig.slack.messages.items() if m["text"] == opener.args["text"]
    )
    assert reply[0].args["thread_ts"] == opener_ts
    assert reply[0].args["blocks"][0]["text"] == {"type": "mrkdwn", "text": "Remembered #1."}

    # A second reply to the same command finds the thread instead of opening another.
    assert await rig.kinds("slack.thread_opened") == ["slack.thread_opened"]
    thread = await rig.runtime.store.scalar("SELECT thread_id FROM inbound")
    assert thread == opener_ts


async def test_direct_message_gets_a_reply_in_the_dm(rig: Rig) -> None:
    status, _ = await rig.client.event(dm("remember buy stamps"), event_id="Ev1")
    assert status == 200
    reply = await rig.slack.wait_for(lambda: rig.posts(channel="D0001"), what="the DM reply")
    assert reply[0].args["text"] == "Remembered #1."
    assert "thread_ts" not in reply[0].args


async def test_mention_gets_a_reply_in_its_thread(rig: Rig) -> None:
    await rig.client.command("remember Acme billing is net 30", user=OPERATOR)
    await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."))
    status, _ = await rig.client.event(
        mention("<@UBOT0001> recall acme", ts="1700000300.000300"), event_id="Ev2"
    )
    assert status == 200
    reply = await rig.slack.wait_for(
        lambda: rig.posts(thread_ts="1700000300.000300"), what="the threaded reply", within=120
    )
    assert "Acme billing is net 30" in reply[0].args["text"]
    assert reply[0].args["channel"] == CHANNEL


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("forged", {"secret": "not-the-secret"}),
        ("stale", {"timestamp": int(time.time()) - 301}),
        ("unsigned", {"signed": False}),
    ],
)
async def test_unverified_requests_get_401_and_run_nothing(
    rig: Rig, how: str, kwargs: dict[str, Any]
) -> None:
    status, _ = await rig.client.command("remember x", user=OPERATOR, **kwargs)
    assert status == 401, how
    status, _ = await rig.client.event(dm("remember y"), event_id=f"Ev-{how}", **kwargs)
    assert status == 401, how
    # A positive signal instead of a pause: a signed marker sent after them is handled
    # in full; by then anything the refused requests had started would show.
    status, _ = await rig.client.event(dm("remember marker"), event_id=f"Ev-marker-{how}")
    assert status == 200
    await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."), what="the marker reply")
    assert await rig.runtime.store.scalar("SELECT COUNT(*) FROM inbound") == 1
    assert await rig.runtime.store.scalar("SELECT text FROM inbound") == "/remember marker"
    assert await rig.runtime.store.scalar("SELECT COUNT(*) FROM tasks") == 1
    chat_calls = [c for c in rig.slack.calls if c.method.startswith("chat.")]
    assert [c.args["text"] for c in chat_calls] == ["Remembered #1."]
    refused = await rig.runtime.events.query(kind="slack.request_refused")
    assert [e.payload["reason"] for e in refused] == [
        {"forged": "bad_signature", "stale": "stale", "unsigned": "unsigned"}[how]
    ] * 2


async def test_a_stranger_is_refused_privately_and_nothing_runs(rig: Rig) -> None:
    status, body = await rig.client.command("remember x", user=STRANGER)
    assert status == 200
    assert "Not allowed" in body and STRANGER in body  # the command's own (ephemeral) answer
    await rig.client.event(mention("<@UBOT0001> remember y", user=STRANGER), event_id="Ev3")
    ephemeral = await rig.slack.wait_for(lambda: rig.slack.called("chat.postEphemeral"))
    assert ephemeral[0].args["user"] == STRANGER
    assert ephemeral[0].args["channel"] == CHANNEL
    assert "Not allowed" in ephemeral[0].args["text"]
    await rig.runtime.settle()
    assert await rig.runtime.store.scalar("SELECT COUNT(*) FROM tasks") == 0
    assert rig.slack.called("chat.postMessage") == []
    assert len(await rig.kinds("message.refused")) == 2


async def test_approval_click_applies_once_and_updates_the_card(rig: Rig) -> None:
    await rig.client.command("confirm ship the newsletter", user=OPERATOR)
    card = (await rig.slack.wait_for(lambda: rig.posts(channel=CHANNEL)[1:]))[0]
    actions = card.args["blocks"][-1]
    assert actions["type"] == "actions"
    approve, reject = actions["elements"]
    assert (approve["style"], reject["style"]) == ("primary", "danger")
    card_ts = next(
        ts for (ch, ts), m in rig.slack.messages.items() if m["blocks"] == card.args["blocks"]
    )
    click = {"channel": CHANNEL, "message_ts": card_ts, "response_url": rig.slack.response_url()}

    status, _ = await rig.client.click(user=OPERATOR, value=approve["value"], **click)
    assert status == 200
    update = (await rig.slack.wait_for(lambda: rig.slack.called("chat.update")))[0]
    assert (update.args["channel"], update.args["ts"]) == (CHANNEL, card_ts)
    assert update.args["text"].startswith(f"Approved by name-{OPERATOR} at ")
    assert all(block["type"] != "actions" for block in update.args["blocks"])
    await rig.slack.wait_for(lambda: rig.slack.responses)
    assert rig.slack.responses[0]["text"] == "Approved."
    assert rig.slack.responses[0]["response_type"] == "ephemeral"
    confirmed = await rig.slack.wait_for(
        lambda: [c for c in rig.posts() if c.args["text"].startswith("Confirmed by")]
    )
    assert confirmed[0].args["thread_ts"] == card.args["thread_ts"]

    # A second click, and a stranger's click, change nothing.
    await rig.client.click(user=OPERATOR, value=reject["value"], **click)
    await rig.client.click(user=STRANGER, value=approve["value"], **click)
    await rig.slack.wait_for(lambda: len(rig.slack.responses) == 3)
    assert rig.slack.responses[1]["text"].startswith(f"Already approved by name-{OPERATOR}")
    assert rig.slack.responses[2]["text"] == "Not allowed."
    await rig.runtime.settle()
    assert len(rig.slack.called("chat.update")) == 1
    assert await rig.kinds("approval.decided") == ["approval.decided"]
    assert await rig.kinds("confirm.approved") == ["confirm.approved"]


async def test_a_retried_event_is_processed_once(rig: Rig) -> None:
    event = dm("remember once only")
    await rig.client.event(event, event_id="Ev9")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = await rig.client.event(event, event_id="Ev9", headers=retry)
    assert status == 200
    await rig.slack.wait_for(lambda: rig.posts(channel="D0001"))
    await rig.runtime.settle()
    assert len(rig.posts(channel="D0001")) == 1
    assert await rig.runtime.store.scalar("SELECT COUNT(*) FROM memories") == 1
    assert await rig.kinds("message.duplicate") == ["message.duplicate"]


async def test_429_and_5xx_are_retried_until_delivered(rig: Rig) -> None:
    rig.slack.fail("chat.postMessage", 1, status=429, retry_after=1)
    rig.slack.fail("chat.postMessage", 1, status=500)
    started = time.monotonic()
    await rig.client.event(dm("remember patience"), event_id="Ev10")
    await rig.slack.wait_for(lambda: rig.posts(channel="D0001"), within=8)
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    statuses = [c.status for c in rig.slack.calls if c.method == "chat.postMessage"]
    assert statuses == [429, 500, 200]
    retries = await rig.runtime.events.query(kind="reply.retry")
    assert retries[0].payload["wait_s"] == 1.0
    assert "rate limit" in retries[0].payload["error"]


async def test_a_refused_delivery_fails_for_good_and_shows_in_status(rig: Rig) -> None:
    await rig.client.command("remember into the void", user=OPERATOR, channel="C404")
    await rig.slack.wait_for(
        lambda: [c for c in rig.slack.calls if c.args.get("channel") == "C404"]
    )
    await rig.runtime.settle()
    counts = await rig.runtime.store.fetchall("SELECT state, last_error FROM outbox")
    assert [r["state"] for r in counts] == [DeliveryState.FAILED]
    assert "channel_not_found" in counts[0]["last_error"]
    assert "invite it" in counts[0]["last_error"]
    await rig.client.event(dm("status"), event_id="Ev11")
    status = await rig.slack.wait_for(lambda: rig.posts(channel="D0001"))
    assert "1 failed" in status[0].args["text"]


async def test_a_slash_thread_is_opened_once_even_when_the_reply_is_retried(rig: Rig) -> None:
    rig.slack.fail("chat.postMessage", 1, status=429, retry_after=0, after=1)  # the reply's 1st try
    await rig.client.command("remember threads stay single", user=OPERATOR)
    reply = await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."))
    openers = [c for c in rig.posts(channel=CHANNEL) if "thread_ts" not in c.args]
    assert len(openers) == 1
    assert reply[0].args["thread_ts"] == await rig.runtime.store.scalar(
        "SELECT thread_id FROM inbound"
    )


async def test_url_verification_answers_the_challenge(rig: Rig) -> None:
    body = b'{"token":"legacy","challenge":"c-123","type":"url_verification"}'
    status, text = await rig.client.post(body, "application/json")
    assert status == 200
    assert "c-123" in text


async def test_a_refused_token_stops_the_start_with_the_variable_to_fix(tmp_path: Path) -> None:
    async with slack_emulator() as slack:
        settings = slack_settings(tmp_path, slack.api_url)
        settings = settings.model_copy(
            update={"slack": settings.slack.model_copy(update={"bot_token": SecretStr("xoxb-bad")})}
        )
        front = SlackFrontEnd(settings)
        async with open_runtime(settings, [front.sender]) as runtime:
            with pytest.raises(ConfigError, match="SOLOOPS_SLACK__BOT_TOKEN"):
                await front.start(runtime)
            await front.stop()


@pytest.fixture
async def socket_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """Socket Mode: no HTTP server and no signing secret; the app dials the emulator."""
    async with slack_emulator() as slack:
        settings = Settings(
            home=tmp_path / "home",
            slack=SlackSettings(
                bot_token=TOKEN,
                app_token=APP_TOKEN,
                api_base_url=slack.api_url,
                operators=[OPERATOR],
            ),
        )
        front = SlackFrontEnd(settings)
        async with open_runtime(
            settings, [front.sender], operators={"slack": front.operators}
        ) as runtime:
            await front.start(runtime)
            try:
                assert front.address is None
                async with aiohttp.ClientSession() as session:
                    yield Rig(slack, SlackClient("unused", SECRET, session), runtime)
            finally:
                await front.stop()


async def test_socket_mode_takes_commands_events_and_refusals(socket_rig: Rig) -> None:
    rig = socket_rig
    ack = await rig.slack.deliver(
        "slash_commands", command_form("remember over the socket", user=OPERATOR), "env-1"
    )
    assert ack == {"envelope_id": "env-1"}
    reply = await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."))
    assert reply[0].args["thread_ts"]

    await rig.slack.deliver(
        "events_api", event_callback(dm("recall socket"), event_id="Ev20"), "env-2"
    )
    found = await rig.slack.wait_for(lambda: rig.posts(channel="D0001"))
    assert "over the socket" in found[0].args["text"]

    ack = await rig.slack.deliver("slash_commands", command_form("status", user=STRANGER), "env-3")
    assert "Not allowed" in ack["payload"]["text"]


async def test_a_refused_app_token_stops_the_start(tmp_path: Path) -> None:
    async with slack_emulator() as slack:
        settings = Settings(
            home=tmp_path / "home",
            slack=SlackSettings(
                bot_token=TOKEN, app_token="xapp-wrong", api_base_url=slack.api_url
            ),
        )
        front = SlackFrontEnd(settings)
        async with open_runtime(settings, [front.sender]) as runtime:
            with pytest.raises(ConfigError, match="SOLOOPS_SLACK__APP_TOKEN"):
                await front.start(runtime)
            await front.stop()


@pytest.mark.slow
async def test_soloops_run_serves_slack_when_a_bot_token_is_set(tmp_path: Path) -> None:
    soloops = str(Path(sys.executable).with_name("soloops"))
    with socket.socket() as probe:  # a free port for the child (it binds right after)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with slack_emulator() as slack, aiohttp.ClientSession() as session:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
        env.update(
            SOLOOPS_HOME=str(tmp_path / "home"),
            SOLOOPS_SLACK__BOT_TOKEN=TOKEN,
            SOLOOPS_SLACK__SIGNING_SECRET=SECRET,
            SOLOOPS_SLACK__API_BASE_URL=slack.api_url,
            SOLOOPS_SLACK__OPERATORS=f'["{OPERATOR}"]',
            SOLOOPS_HTTP__PORT=str(port),
        )
        child = await asyncio.create_subprocess_exec(
            soloops, "run", env=env, stdout=PIPE, stderr=PIPE, stdin=DEVNULL
        )
        try:
            client = SlackClient(f"http://127.0.0.1:{port}{EVENTS_PATH}", SECRET, session)
            deadline = time.monotonic() + 20
            while True:
                try:
                    status, _ = await client.event(dm("remember from a real run"), event_id="EvRun")
                    break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "soloops run never listened"
                    await asyncio.sleep(0.1)
            assert status == 200
            reply = await slack.wait_for(lambda: slack.called("chat.postMessage"), within=10)
            assert reply[0].args["text"] == "Remembered #1."
        finally:
            child.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(child.communicate(), 20)
        assert child.returncode == 0, err.decode()
        assert "slack front end started" in err.decode()


async def test_a_busy_port_stops_the_start_with_the_variable_to_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with slack_emulator() as slack:
            settings = slack_settings(tmp_path, slack.api_url).model_copy(
                update={"http": HttpSettings(port=taken.getsockname()[1])}
            )
            front = SlackFrontEnd(settings)
            async with open_runtime(settings, [front.sender]) as runtime:
                with pytest.raises(ConfigError, match="SOLOOPS_HTTP__PORT"):
                    await front.start(runtime)
                await front.stop()


async def test_http_mode_serves_from_a_shared_server_next_to_healthz(tmp_path: Path) -> None:
    from bot.health import Health, add_health_routes
    from bot.http import HttpServer

    async with slack_emulator() as slack:
        settings = slack_settings(tmp_path, slack.api_url)
        server = HttpServer(settings.http)
        front = SlackFrontEnd(settings, server)
        add_health_routes(server, Health())
        with pytest.raises(ValueError, match="already registered"):
            SlackFrontEnd(settings, server)  # one Slack per server
        async with (
            open_runtime(settings, [front.sender], operators={"slack": front.operators}) as runtime,
            server,
            aiohttp.ClientSession() as session,
        ):
            client = SlackClient(f"{server.url}{EVENTS_PATH}", SECRET, session)
            status, _ = await client.event(dm("remember too early"), event_id="EvEarly")
            assert status == 503  # the server is up before the front end: Slack retries
            await front.start(runtime)
            try:
                assert front.address == server.address
                status, _ = await client.event(dm("remember shared"), event_id="EvShared")
                assert status == 200
                reply = await slack.wait_for(lambda: slack.called("chat.postMessage"))
                assert reply[0].args["text"] == "Remembered #1."
                async with session.get(f"{server.url}/healthz") as health:
                    assert health.status == 200
            finally:
                await front.stop()
            assert server.started  # the front end does not stop a server it does not own


async def test_a_channel_bound_to_leads_by_slash_command_takes_mentions_as_leads(
    rig: Rig,
) -> None:
    """`/ops bind leads` in a channel: a mention there is a lead, answered in its thread;
    `/ops unbind` ends it. Over signed HTTP through slack-bolt, as a workspace sends."""

    def said(words: str) -> list[Call]:
        return [c for c in rig.posts(channel=CHANNEL) if words in c.args.get("text", "")]

    status, _ = await rig.client.command("bind leads", user=OPERATOR)
    assert status == 200
    await rig.slack.wait_for(lambda: said("is now bound to leads"), what="the binding")
    status, _ = await rig.client.event(
        mention("<@UBOT0001> Jane Doe jane@acme.com wants a site", ts="1700000400.000400"),
        event_id="EvBind1",
    )
    assert status == 200
    reply = await rig.slack.wait_for(
        lambda: rig.posts(thread_ts="1700000400.000400"), what="the lead's reply", within=120
    )
    assert "Jane Doe" in reply[0].args["text"]
    lead = await rig.runtime.store.fetchone(
        "SELECT c.name, c.email FROM leads l JOIN contacts c ON c.id = l.contact_id"
    )
    assert lead is not None and (lead["name"], lead["email"]) == ("Jane Doe", "jane@acme.com")
    tasks = await rig.runtime.store.fetchall("SELECT kind FROM tasks ORDER BY id")
    assert [row["kind"] for row in tasks] == ["bind", "lead_chat"]  # no router guess

    status, _ = await rig.client.command("unbind", user=OPERATOR)
    assert status == 200
    await rig.slack.wait_for(lambda: said("is no longer bound to leads"), what="the unbinding")
    assert await rig.runtime.store.fetchall("SELECT * FROM bindings") == []
    assert await rig.kinds("binding") == ["binding.set", "binding.removed"]
