"""Slack's pure parts: rendering, payload mapping, signatures, error classes, settings."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from agents.registry import build_registry
from agents.replies import Button, Option, Reply
from bot.frontends import configured_front_ends
from bot.inbound import Inbound
from bot.slack import signature_problem
from bot.slack_blocks import ACTION_PREFIX, SECTION_MAX, chunks, escape, render, thread_opener
from bot.slack_inbound import (
    OPENS_THREAD,
    BlockActions,
    EventCallback,
    SlashCommand,
    action_inbound,
    as_command,
    command_inbound,
    event_inbound,
    strip_mention,
)
from bot.slack_sender import delivery_error
from config import ConfigError, Settings, load_settings
from tests.emulators.slack import file_share_event

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
NAMES = frozenset(command.name for command in build_registry().catalog)


def test_escape_covers_slack_markup() -> None:
    assert escape("a & <b> <@U1> <!channel>") == "a &amp; &lt;b&gt; &lt;@U1&gt; &lt;!channel&gt;"


def test_chunks_fit_the_section_limit_after_escaping_and_keep_entities_whole() -> None:
    text = ("x" * 100 + "&\n") * 200
    pieces = chunks(text)
    assert len(pieces) > 1
    assert all(len(escape(piece)) <= SECTION_MAX for piece in pieces)
    assert "".join(pieces).replace("\n", "") == text.replace("\n", "")
    long_line = "<" * 5000
    assert all(len(escape(p)) <= SECTION_MAX for p in chunks(long_line))
    assert chunks("") == [" "]


def test_render_a_card_and_its_decided_form() -> None:
    card = Reply(
        text="Approval needed\nPay <Acme> 1200 EUR",
        buttons=(
            Button(label="Approve", data="b:tokA", style="primary"),
            Button(label="Reject", data="b:tokR", style="danger"),
        ),
    )
    text, blocks = render(card)
    assert text == "Approval needed\nPay &lt;Acme&gt; 1200 EUR"
    assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    actions = blocks[1]
    assert actions["type"] == "actions"
    assert [(e["action_id"], e["value"], e["style"]) for e in actions["elements"]] == [
        (f"{ACTION_PREFIX}0", "b:tokA", "primary"),
        (f"{ACTION_PREFIX}1", "b:tokR", "danger"),
    ]
    _, decided = render(Reply(text="Approved by slack:U1"))
    assert [b["type"] for b in decided] == ["section"]


def test_render_marks_errors_and_caps_blocks() -> None:
    text, _ = render(Reply(text="boom", tone="error"))
    assert text == ":warning: boom"
    huge = Reply(text="line\n" * 60_000, buttons=(Button(label="Go", data="b:x"),))
    fallback, blocks = render(huge)
    assert len(blocks) == 50 and blocks[-1]["type"] == "actions"
    assert "too long" in blocks[-2]["text"]["text"]
    assert len(fallback) <= 3001
    assert "style" not in blocks[-1]["elements"][0]


def test_thread_opener_says_who_asked_what() -> None:
    assert thread_opener("U1", "/remember a<b") == "<@U1> asked: /ops remember a&lt;b"


@pytest.mark.parametrize(
    ("text", "bot", "expected"),
    [
        ("<@UBOT> remember x", "UBOT", "remember x"),
        ("<@UBOT|soloops>: recall y", "UBOT", "recall y"),
        ("hey <@UBOT> status", "UBOT", "hey status"),
        ("<@UOTHER> hi", "UBOT", "<@UOTHER> hi"),
        ("<@UANY> notes", None, "notes"),
    ],
)
def test_strip_mention(text: str, bot: str | None, expected: str) -> None:
    assert strip_mention(text, bot) == expected


@pytest.mark.parametrize(
    ("text", "always", "expected"),
    [
        ("remember x", True, "/remember x"),
        ("invoice Acme 1200 EUR", True, "/invoice Acme 1200 EUR"),
        ("", True, "/help"),
        ("/recall y", True, "/recall y"),
        ("Remember x", False, "/Remember x"),
        ("hello there", False, "hello there"),
        ("", False, ""),
    ],
)
def test_as_command(text: str, always: bool, expected: str) -> None:
    assert as_command(text, always=always, names=NAMES) == expected


def test_a_feature_slash_command_is_the_same_command_typed() -> None:
    command = SlashCommand.model_validate(
        {"command": "/invoice", "text": " Acme 1200 EUR consulting ", "user_id": "U1",
         "channel_id": "C1", "trigger_id": "9.9.x"}
    )  # fmt: skip
    assert command_inbound(command, NOW).text == "/invoice Acme 1200 EUR consulting"


def test_slash_command_maps_to_a_thread_to_open() -> None:
    command = SlashCommand.model_validate(
        {"command": "/ops", "text": "remember x", "user_id": "U1", "channel_id": "C1",
         "trigger_id": "123.456.abc", "team_id": "T1", "extra": "ignored"}
    )  # fmt: skip
    inbound = command_inbound(command, NOW)
    assert (inbound.platform, inbound.message_id, inbound.chat_id) == (
        "slack",
        "cmd:123.456.abc",
        "C1",
    )
    assert (inbound.text, inbound.thread_id) == ("/remember x", OPENS_THREAD)


def _callback(**event: Any) -> EventCallback:
    base = {"type": "message", "channel": "D1", "channel_type": "im", "user": "U1",
            "text": "remember x", "ts": "1.1"}  # fmt: skip
    return EventCallback.model_validate({"event_id": "Ev1", "event": {**base, **event}})


def test_event_mapping_threads_and_skips() -> None:
    dm = event_inbound(_callback(), "UBOT", NOW, NAMES)
    assert dm is not None
    assert (dm.message_id, dm.chat_id, dm.thread_id, dm.text) == ("Ev1", "D1", None, "/remember x")
    in_thread = event_inbound(_callback(thread_ts="0.9"), "UBOT", NOW)
    assert in_thread is not None and in_thread.thread_id == "0.9"
    mention = event_inbound(
        _callback(type="app_mention", channel="C1", channel_type=None, text="<@UBOT> notes"),
        "UBOT",
        NOW,
        NAMES,
    )
    assert mention is not None and (mention.thread_id, mention.text) == ("1.1", "/notes")
    for skipped in (
        _callback(subtype="message_changed"),
        _callback(bot_id="B1"),
        _callback(channel_type="channel", channel="C1"),
        _callback(type="app_mention"),  # in a DM: the message event carries it
        _callback(user=None),
    ):
        assert event_inbound(skipped, "UBOT", NOW) is None


def _actions(action_id: str, value: str | None) -> BlockActions:
    return BlockActions.model_validate(
        {
            "type": "block_actions",
            "user": {"id": "U1"},
            "channel": {"id": "C1"},
            "message": {"ts": "5.5", "thread_ts": "4.4"},
            "container": {"message_ts": "5.5"},
            "actions": [{"action_id": action_id, "action_ts": "6.6", "value": value}],
            "response_url": "https://hooks.example/x",
        }
    )


def test_click_mapping() -> None:
    press = action_inbound(_actions(f"{ACTION_PREFIX}0", "b:tok"), NOW)
    assert press is not None
    assert (press.message_id, press.callback_data, press.thread_id, press.user_id) == (
        "click:C1:5.5:6.6", "b:tok", "4.4", "U1",
    )  # fmt: skip
    assert action_inbound(_actions("someone.else", "x"), NOW) is None
    long = action_inbound(_actions(f"{ACTION_PREFIX}0", "x" * 2000), NOW)
    assert long is not None and len(long.callback_data or "") == 256


def test_signature_problems() -> None:
    secret, body, now = "s3cret", b"token=x&text=hi", time.time()
    stamp = str(int(now))
    good = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature_problem(secret, stamp, good, body, now) is None
    assert signature_problem(secret, None, good, body, now) == "unsigned"
    assert signature_problem(secret, stamp, None, body, now) == "unsigned"
    assert signature_problem(secret, "soon", good, body, now) == "bad_timestamp"
    assert signature_problem(secret, stamp, good, body, now + 301) == "stale"
    assert signature_problem(secret, stamp, good, body + b"&x=1", now) == "bad_signature"
    assert signature_problem("other", stamp, good, body, now) == "bad_signature"
    assert signature_problem(secret, stamp, good, b"\xff", now) == "bad_body"


@pytest.mark.parametrize(
    ("status", "error", "retry_after", "permanent", "wait"),
    [
        (429, "ratelimited", "7", False, 7.0),
        (429, None, None, False, 1.0),
        (200, "ratelimited", "junk", False, 1.0),
        (500, None, None, False, None),
        (503, None, None, False, None),
        (200, "internal_error", None, False, None),
        (200, "channel_not_found", None, True, None),
        (200, "invalid_auth", None, True, None),
        (200, "not_in_channel", None, True, None),
        (400, None, None, True, None),
    ],
)
def test_delivery_error_classes(
    status: int, error: str | None, retry_after: str | None, permanent: bool, wait: float | None
) -> None:
    exc = delivery_error(status, error, retry_after)
    assert (exc.permanent, exc.retry_after) == (permanent, wait)


def test_invalid_auth_says_which_setting() -> None:
    assert "SOLOOPS_SLACK__BOT_TOKEN" in str(delivery_error(200, "invalid_auth", None))


def test_slack_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_SLACK__BOT_TOKEN", "xoxb-1-2")
    monkeypatch.setenv("SOLOOPS_SLACK__SIGNING_SECRET", "sekrit-value")
    monkeypatch.setenv("SOLOOPS_SLACK__OPERATORS", '["U1", "U2"]')
    monkeypatch.setenv("SOLOOPS_SLACK__API_BASE_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("SOLOOPS_HTTP__PORT", "9090")
    settings = load_settings()
    assert settings.slack.operators == ["U1", "U2"]
    assert settings.slack.api_base_url == "http://127.0.0.1:9/api/"
    assert not settings.slack.socket_mode
    assert settings.http.port == 9090
    assert {"xoxb-1-2", "sekrit-value"} <= set(settings.secret_values())
    assert "xoxb-1-2" not in repr(settings)
    front_ends = configured_front_ends(settings)
    assert [f.platform for f in front_ends] == ["slack"]
    assert front_ends[0].operators == frozenset({"U1", "U2"})
    monkeypatch.setenv("SOLOOPS_SLACK__APP_TOKEN", "xapp-1-2")
    assert load_settings().slack.socket_mode


def test_no_bot_token_no_slack() -> None:
    assert configured_front_ends(Settings()) == []


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SOLOOPS_SLACK__BOT_TOKEN": "xoxb-1"}, "set SOLOOPS_SLACK__SIGNING_SECRET"),
        ({"SOLOOPS_SLACK__BOT_TOKEN": "xoxp-1", "SOLOOPS_SLACK__SIGNING_SECRET": "s"},
         "SOLOOPS_SLACK__BOT_TOKEN must be the bot token"),
        ({"SOLOOPS_SLACK__BOT_TOKEN": "xoxb-1", "SOLOOPS_SLACK__APP_TOKEN": "xoxb-2"},
         "SOLOOPS_SLACK__APP_TOKEN must be an app-level token"),
        ({"SOLOOPS_SLACK__API_BASE_URL": "slack.com/api"}, "SOLOOPS_SLACK__API_BASE_URL"),
    ],
)  # fmt: skip
def test_slack_settings_fail_fast_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=says):
        load_settings()


def test_manifest_matches_what_the_front_end_serves() -> None:
    yaml = pytest.importorskip("yaml")  # a transitive dependency; the check is worth having
    from pathlib import Path

    from agents.registry import build_registry
    from bot.manifest import slash_names
    from bot.slack import COMMAND, EVENTS_PATH

    manifest = yaml.safe_load((Path(__file__).parents[2] / "slack-app-manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    commands = [c["command"] for c in features["slash_commands"]]
    assert commands[0] == COMMAND and set(commands) == slash_names(build_registry())
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",  # the Home tab's refresh when the operator looks
        "app_mention",
        "message.im",
    }
    assert features["app_home"]["home_tab_enabled"] is True
    assert settings["interactivity"]["is_enabled"]
    urls = [
        *(command["url"] for command in features["slash_commands"]),
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    assert all(url.endswith(EVENTS_PATH) for url in urls)
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "app_mentions:read", "im:history"} <= scopes


async def test_doctor_has_a_slack_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.doctor import run_checks

    monkeypatch.setenv("SOLOOPS_SLACK__BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SOLOOPS_SLACK__APP_TOKEN", "xapp-1")
    line = next(c for c in await run_checks() if c.name == "slack")
    assert (line.level, line.detail.split(",")[0]) == ("warn", "Socket Mode")
    assert "SOLOOPS_SLACK__OPERATORS" in line.fix
    monkeypatch.setenv("SOLOOPS_SLACK__OPERATORS", '["U1"]')
    line = next(c for c in await run_checks() if c.name == "slack")
    assert line.level == "ok" and "1 operator(s)" in line.detail


def test_refused_requests_are_recorded_within_a_budget() -> None:
    from bot.refusals import RefusalBudget

    budget = RefusalBudget(limit=2, window_s=60)
    assert [budget.admit(t) for t in (0, 1, 2, 3)] == [0, 0, None, None]
    assert budget.admit(61) == 2  # a new window: recorded, counting the two skipped
    assert budget.admit(62) == 0


def test_options_are_numbered_in_slack_too() -> None:
    text, blocks = render(
        Reply(text="Which one?", options=(Option(label="Notes", command="/notes"),))
    )
    assert "1. Notes: /notes" in text
    assert "Send the number of your choice." in str(blocks)


CLIP = {
    "id": "F0VOICE1",
    "name": "audio_message.webm",
    "mimetype": "audio/webm",
    "subtype": "slack_audio",
    "duration_ms": 4200,
    "url_private_download": "https://files.slack.com/files-pri/T1-F0VOICE1/download/a.webm",
    "url_private": "https://files.slack.com/files-pri/T1-F0VOICE1/a.webm",
}


def _share(file: dict[str, Any], **event: Any) -> Inbound | None:
    body = {"event_id": "EvF1", "event": {**file_share_event(file, user="U1"), **event}}
    return event_inbound(EventCallback.model_validate(body), "UBOT", NOW, NAMES)


def test_a_shared_voice_clip_carries_its_audio_reference() -> None:
    inbound = _share(CLIP)
    assert inbound is not None and inbound.text == "" and inbound.chat_id == "D0001"
    audio = inbound.audio
    assert audio is not None
    assert (audio.platform, audio.file_id, audio.mime, audio.kind) == (
        "slack",
        "F0VOICE1",
        "audio/webm",
        "voice",
    )
    assert audio.url == CLIP["url_private_download"] and audio.duration_s == 4
    plain = _share({"id": "F2", "mimetype": "audio/mpeg", "url_private": "https://x.slack.com/f"})
    assert plain is not None and plain.audio is not None
    assert (plain.audio.kind, plain.audio.filename, plain.audio.url) == (
        "audio",
        "voice.mpeg",
        "https://x.slack.com/f",
    )


def test_only_audio_file_shares_from_people_are_taken() -> None:
    assert _share({"id": "F3", "mimetype": "application/pdf", "name": "a.pdf"}) is None
    assert _share(CLIP, user="UBOT") is None  # soloops's own upload
    assert _share(CLIP, bot_id="B1") is None
    assert _share(CLIP, subtype="message_changed") is None
    assert _share(CLIP, channel="C0001", channel_type="channel") is None  # no mention
    mention = _share(
        CLIP, type="app_mention", subtype=None, channel="C0001", text="<@UBOT>", ts="1.1"
    )
    assert mention is not None and mention.audio is not None and mention.thread_id == "1.1"
