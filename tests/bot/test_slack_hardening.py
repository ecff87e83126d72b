"""Slack under attack (issue 10 items 18 and 2): signed but malformed bodies get a
400 and one log line; a message that cannot be stored is not acknowledged, so Slack
delivers it again. Real slack-bolt over real HTTP, requests signed with slack-sdk."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.slack_inbound import body_problem
from tests.bot.test_slack import OPERATOR, Rig, dm, slack_rig, slack_settings
from tests.emulators.slack import event_callback, slack_emulator
from tests.harness.full_disk import fill_up, make_room


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with slack_emulator() as slack:
        settings = slack_settings(tmp_path, slack.api_url)
        async with slack_rig(settings, slack) as rig:
            yield rig


JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def envelope_with(event: object) -> bytes:
    body = event_callback({"type": "message"}, event_id="Ev-bad")
    body["event"] = event
    return json.dumps(body).encode()


MALFORMED: list[tuple[str, bytes, str]] = [
    ("not json", b"{not json", JSON_TYPE),
    ("a json list", b"[]", JSON_TYPE),
    ("a json string", b'"hello"', JSON_TYPE),
    ("event a string", envelope_with("message"), JSON_TYPE),
    ("event a list", envelope_with([1, 2]), JSON_TYPE),
    (
        "click without actions",
        form(payload=json.dumps({"type": "block_actions", "user": {"id": OPERATOR}})),
        FORM_TYPE,
    ),
    (
        "click with actions not a list",
        form(payload=json.dumps({"type": "block_actions", "actions": {"a": 1}})),
        FORM_TYPE,
    ),
    ("payload not json", form(payload="{oops"), FORM_TYPE),
    ("payload a list", form(payload="[1, 2]"), FORM_TYPE),
]


@pytest.mark.parametrize(
    ("name", "body", "content_type"), MALFORMED, ids=[name for name, _, _ in MALFORMED]
)
def test_body_problem_names_what_is_wrong(name: str, body: bytes, content_type: str) -> None:
    assert body_problem(body.decode(), content_type) is not None, name


def test_well_formed_bodies_have_no_problem() -> None:
    assert body_problem(envelope_with({"type": "message"}).decode(), JSON_TYPE) is None
    assert body_problem(json.dumps({"type": "url_verification"}), JSON_TYPE) is None
    assert body_problem(form(command="/ops", text="help").decode(), FORM_TYPE) is None
    click = {"type": "block_actions", "actions": [{"action_id": "x"}]}
    assert body_problem(form(payload=json.dumps(click)).decode(), FORM_TYPE) is None


@pytest.mark.parametrize(
    ("name", "body", "content_type"), MALFORMED, ids=[name for name, _, _ in MALFORMED]
)
async def test_a_signed_malformed_body_gets_400_and_one_line(
    rig: Rig, caplog: pytest.LogCaptureFixture, name: str, body: bytes, content_type: str
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    status, _ = await rig.client.post(body, content_type)
    assert status == 400, name
    ours = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    assert ours[0].exc_info is None and "Traceback" not in caplog.text
    [event] = await rig.runtime.events.query(kind="slack.request_malformed")
    assert event.payload["problem"]
    # Nothing else came of it, and the next good request works.
    status, _ = await rig.client.event(dm("/remember still fine"), event_id="Ev-good")
    assert status == 200
    await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."), what="the reply")


async def test_a_message_that_cannot_be_stored_is_not_acknowledged(rig: Rig) -> None:
    store = rig.runtime.store
    await fill_up(store)  # a real SQLITE_FULL
    big = "/remember " + "y" * 8000  # needs pages the file may not grow
    status, _ = await rig.client.event(dm(big), event_id="Ev-full")
    assert not 200 <= status < 300  # so Slack delivers it again
    assert int(await store.scalar("SELECT COUNT(*) FROM inbound")) == 0
    await make_room(store)
    retried, _ = await rig.client.event(
        dm(big), event_id="Ev-full", headers={"X-Slack-Retry-Num": "1"}
    )
    assert retried == 200
    assert int(await store.scalar("SELECT COUNT(*) FROM inbound")) == 1
    await rig.slack.wait_for(lambda: rig.posts(text="Remembered #1."), what="the reply")
    await rig.runtime.settle()
