"""Reply files on every platform: the digest's chart as a Telegram photo and a Slack
upload, a document with a text too long for a caption, and a retried delivery that
sends the file again from the home."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from agents.base import Agent, AgentResult, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Attachment, Reply
from config import Settings
from tests.bot.test_slack import Rig, dm, slack_rig, slack_settings
from tests.bot.test_telegram import OP, running
from tests.emulators.slack import slack_emulator
from tests.emulators.telegram import Failure, StoredMessage, TelegramEmulator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF = b"%PDF-1.4 a tiny invoice"
LONG = "\n".join(f"line {n}: " + "x" * 60 for n in range(40))  # over the 1024 caption limit


def photos(api: TelegramEmulator) -> list[StoredMessage]:
    return [m for m in api.sent(OP) if m.photo]


class FileIntent(Intent):
    """Send a long text with a PDF."""

    kind: Literal["pdf"] = "pdf"


class FileAgent(Agent):
    name = "filer"

    def __init__(self, ports: Ports) -> None:
        self._files = ports.files

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        path = await self._files.save(PDF, "invoice-7.pdf")
        pdf = Attachment(path=str(path), filename="invoice-7.pdf", mime="application/pdf")
        return [Reply(text=LONG, attachments=(pdf,))]


FEATURE = Feature(
    name="filer",
    build=FileAgent,
    intents=(FileIntent,),
    commands=(CommandSpec("pdf", "pdf", "pdf", "send a PDF"),),
)


async def test_telegram_gets_the_digest_chart_as_a_photo_with_its_caption(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with running(settings, telegram_api) as bot:
        asked = await bot.say("/digest")
        await telegram_api.wait_for(lambda: photos(telegram_api), what="the chart")
        [photo] = photos(telegram_api)
    assert photo.photo is not None and photo.photo.content.startswith(PNG_MAGIC)
    assert photo.photo.filename.startswith("digest-") and photo.photo.filename.endswith(".png")
    assert photo.text.startswith("<b>Daily digest") or photo.text.startswith("Daily digest")
    assert photo.reply_to == asked["message"]["message_id"]
    assert not telegram_api.calls_of("sendMessage")  # the short digest is the caption


async def test_telegram_sends_a_long_text_first_then_the_document(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    # SOLOOPS_FEATURES names this module: its FEATURE (/pdf) runs beside the defaults.
    settings = settings.model_copy(update={"features": ["tests.bot.test_attachments"]})
    async with running(settings, telegram_api) as bot:
        await bot.say("/pdf")
        await telegram_api.wait_for(
            lambda: [m for m in telegram_api.sent(OP) if m.document], what="the PDF"
        )
        [doc] = [m for m in telegram_api.sent(OP) if m.document]
        texts = [m for m in telegram_api.sent(OP) if not m.document]
    assert doc.document is not None and doc.document.content == PDF
    assert doc.document.filename == "invoice-7.pdf" and doc.text == ""
    assert "".join(m.text for m in texts).count("line ") == 40
    assert max(m.message_id for m in texts) < doc.message_id


async def test_a_retried_telegram_photo_is_read_again_from_the_home(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    telegram_api.fail_next("sendPhoto", Failure(status=502, description="Bad Gateway"))
    async with running(settings, telegram_api) as bot:
        await bot.say("/digest")
        await telegram_api.wait_for(lambda: photos(telegram_api), what="the chart, retried")
        attempts = telegram_api.calls_of("sendPhoto")
    assert len(attempts) == 2
    first, second = (call.params["photo"].content for call in attempts)
    assert first == second and first.startswith(PNG_MAGIC)
    assert len(photos(telegram_api)) == 1


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with slack_emulator() as slack:
        settings = slack_settings(tmp_path, slack.api_url)
        async with slack_rig(settings, slack) as rig:
            yield rig


async def test_slack_uploads_the_digest_chart_in_the_conversation(rig: Rig) -> None:
    await rig.client.event(dm("/digest"), event_id="Ev1")
    [shared] = await rig.slack.wait_for(lambda: rig.slack.shared, what="the chart upload")
    assert shared["content"].startswith(PNG_MAGIC)
    assert shared["length"] == len(shared["content"])
    assert shared["channel"] == "D0001" and shared["filename"].startswith("digest-")
    [text] = rig.posts(channel="D0001")
    assert str(text.args["text"]).startswith("Daily digest")
    methods = [c.method for c in rig.slack.calls if c.method.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    [complete] = rig.slack.called("files.completeUploadExternal")
    assert [f["id"] for f in complete.args["files"]] == [shared["id"]]
