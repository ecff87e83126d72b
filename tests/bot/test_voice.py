"""Voice notes end to end on Telegram: real PTB against the emulator (the update, getFile
and the file download), the loopback transcription server, the real gateway, voice
feature, grammar and notes. On Slack: a signed file-share event through real
slack-bolt, the file downloaded from the emulator with the bot token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agents.voice import HOW_TO_ENABLE, spoken_command
from bot.slack import token_may_go_to
from config import Settings, TranscribeSettings
from tests.bot.test_slack import OPERATOR, Rig, slack_settings
from tests.bot.test_slack import slack_rig as serving_slack
from tests.bot.test_telegram import OP, Running, running
from tests.emulators.provider import Provider
from tests.emulators.slack import TOKEN, slack_emulator
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.transcribe import TranscribeServer

AUDIO = b"OggS\x00fake-opus-voice-note"


@asynccontextmanager
async def with_transcriber(
    settings: Settings, api: TelegramEmulator, server: TranscribeServer
) -> AsyncIterator[Running]:
    transcribe = TranscribeSettings.model_validate(server.settings())
    async with running(settings.model_copy(update={"transcribe": transcribe}), api) as bot:
        yield bot


async def _voice(bot: Running) -> None:
    await bot.deliver(bot.api.send_voice(OP, AUDIO))


async def test_a_voice_note_is_heard_and_handled_as_typed_text(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with (
        TranscribeServer(transcripts={AUDIO: "Remember the door code is 1234."}) as server,
        with_transcriber(settings, telegram_api, server) as bot,
    ):
        await _voice(bot)
        heard, saved = bot.api.sent(OP)
        assert heard.text == "Heard: “Remember the door code is 1234.”"
        assert saved.text == "Remembered #1."  # the note's own reply, after it
        [upload] = server.uploads
        assert upload.audio == AUDIO  # downloaded through getFile + the file URL
        assert telegram_api.calls_of("getFile") and telegram_api.file_downloads
        note = await bot.runtime.store.scalar("SELECT text FROM memories")
        assert note == "the door code is 1234."
        # Stored first, like any message; the voice task became the note, in place.
        assert await bot.count("SELECT COUNT(*) FROM inbound") == 1
        assert await bot.count("SELECT COUNT(*) FROM tasks WHERE kind = 'remember'") == 1
        assert await bot.count("SELECT COUNT(*) FROM events WHERE kind = 'task.rerouted'") == 1
        assert upload.headers.get("Idempotency-Key", "").startswith("telegram:")


async def test_a_voice_note_without_transcription_gets_the_how_to(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with running(settings, telegram_api) as bot:
        await _voice(bot)
        [reply] = bot.api.sent(OP)
        assert reply.text == HOW_TO_ENABLE and "SOLOOPS_TRANSCRIBE__BASE_URL" in reply.text
        assert await bot.count("SELECT COUNT(*) FROM inbound") == 1  # still stored
        assert await bot.count("SELECT COUNT(*) FROM memories") == 0
        assert not bot.api.file_downloads  # nothing fetched for nothing


async def test_a_refused_transcription_gets_a_clear_reply_and_runs_nothing(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with (
        TranscribeServer() as server,
        with_transcriber(settings, telegram_api, server) as bot,
    ):
        server.fail(400, "unsupported audio format")
        await _voice(bot)
        [reply] = bot.api.sent(OP)
        assert "could not transcribe" in reply.text and "Nothing was run" in reply.text
        assert await bot.count("SELECT COUNT(*) FROM memories") == 0
        server.fail(503, "overloaded")
        await _voice(bot)
        assert "send it again" in bot.api.sent(OP)[-1].text


async def test_a_spoken_action_always_waits_for_approval(
    tmp_path: Path, telegram_api: TelegramEmulator, provider: Provider
) -> None:
    """A spoken command may propose an action (it is the operator's words, read by the
    command grammar), but even under an auto policy it waits for a tap: a transcript may
    have misheard. Typed, the same command runs at once."""
    settings = Settings(home=tmp_path / "home", hooks={"crm": provider.hook()})
    spoken = b"OggS\x00hook-spoken"
    async with (
        TranscribeServer(transcripts={spoken: "Hook crm spoken item."}) as server,
        with_transcriber(settings, telegram_api, server) as bot,
    ):
        await bot.say("/policy ops.hook auto")
        await bot.say("/hook crm typed item")
        await bot.runtime.settle()
        assert len(provider.processed) == 1  # typed: auto, as the policy says

        await bot.deliver(bot.api.send_voice(OP, spoken))
        await bot.runtime.settle()
        card = bot.card()
        assert "Approval needed (ops)" in card.text and "spoken item" in card.text
        assert len(provider.processed) == 1  # the spoken one waits
        assert await bot.press(card.buttons[0]["callback_data"], card) == "Approved."
        await bot.runtime.settle()
        assert len(provider.processed) == 2
        texts = sorted(d.json()["text"] for d in provider.processed.values())
        assert texts == ["spoken item.", "typed item"]


async def test_a_spoken_action_held_by_a_pause_still_waits_for_approval(
    tmp_path: Path, telegram_api: TelegramEmulator, provider: Provider
) -> None:
    """Held and run again later (or after a crash), a spoken command keeps its rule."""
    settings = Settings(home=tmp_path / "home", hooks={"crm": provider.hook()})
    spoken = b"OggS\x00hook-held"
    async with (
        TranscribeServer(transcripts={spoken: "hook crm held item"}) as server,
        with_transcriber(settings, telegram_api, server) as bot,
    ):
        await bot.say("/policy ops.hook auto")
        await bot.say("/pause ops")
        await bot.deliver(bot.api.send_voice(OP, spoken))
        await bot.runtime.settle()
        assert provider.requests == []
        await bot.say("/resume ops")
        await bot.runtime.settle()
        assert provider.requests == []  # resumed, it asks instead of running
        card = bot.card()
        assert "held item" in card.text
        assert await bot.press(card.buttons[0]["callback_data"], card) == "Approved."
        await bot.runtime.settle()
        assert len(provider.processed) == 1


def test_spoken_commands_need_no_slash() -> None:
    commands = frozenset({"remember", "recall"})
    assert spoken_command("Remember, the code is 1.", commands) == "/remember the code is 1."
    assert spoken_command("what do I know about Acme", commands) == "what do I know about Acme"
    assert spoken_command("/recall acme", commands) == "/recall acme"


# --- Slack: an audio file shared in a DM, through real slack-bolt and the emulator ---

SLACK_AUDIO = b"\x1aE\xdf\xa3fake-webm-voice-clip"
DM_CHANNEL = "D0001"


@asynccontextmanager
async def slack_rig(tmp_path: Path, server: TranscribeServer | None = None) -> AsyncIterator[Rig]:
    """soloops with the Slack front end in HTTP mode (and the transcriber, if given)."""
    async with slack_emulator() as slack:
        settings = slack_settings(tmp_path, slack.api_url)
        if server is not None:
            transcribe = TranscribeSettings.model_validate(server.settings())
            settings = settings.model_copy(update={"transcribe": transcribe})
        async with serving_slack(settings, slack) as rig:
            yield rig


async def _dm_replies(rig: Rig, count: int) -> list[str]:
    await rig.runtime.settle()
    posts = await rig.slack.wait_for(
        lambda: len(rig.posts(channel=DM_CHANNEL)) >= count and rig.posts(channel=DM_CHANNEL),
        within=60,
        what=f"{count} DM replies",
    )
    return [str(post.args["text"]) for post in posts]


async def _count(rig: Rig, sql: str) -> int:
    return int(await rig.runtime.store.scalar(sql) or 0)


async def test_a_slack_voice_clip_is_heard_and_handled_as_typed_text(tmp_path: Path) -> None:
    async with (
        TranscribeServer(transcripts={SLACK_AUDIO: "Remember the door code is 1234."}) as server,
        slack_rig(tmp_path, server) as rig,
    ):
        clip = rig.slack.share_file(SLACK_AUDIO)
        status, _ = await rig.client.file_share(clip, event_id="EvVoice1", user=OPERATOR)
        assert status == 200
        heard, saved = await _dm_replies(rig, 2)
        assert heard == "Heard: “Remember the door code is 1234.”"
        assert saved == "Remembered #1."
        [upload] = server.uploads
        assert upload.audio == SLACK_AUDIO  # downloaded from url_private_download
        assert (upload.filename, upload.content_type) == ("audio_message.webm", "audio/webm")
        assert rig.slack.file_downloads == [(clip["id"], 200)]  # with the bot token
        assert upload.headers.get("Idempotency-Key", "").startswith("slack:")
        assert await rig.runtime.store.scalar("SELECT text FROM memories") == (
            "the door code is 1234."
        )
        assert await _count(rig, "SELECT COUNT(*) FROM inbound") == 1
        assert await _count(rig, "SELECT COUNT(*) FROM tasks WHERE kind = 'remember'") == 1
        [received] = await rig.runtime.events.query(kind="message.received")
        assert received.payload["audio"]["file_id"] == clip["id"]


async def test_a_slack_clip_without_a_url_is_found_through_files_info(tmp_path: Path) -> None:
    async with (
        TranscribeServer(transcripts={SLACK_AUDIO: "remember the gate code is 9"}) as server,
        slack_rig(tmp_path, server) as rig,
    ):
        clip = rig.slack.share_file(SLACK_AUDIO, name="memo.m4a", mimetype="audio/mp4")
        bare = {k: v for k, v in clip.items() if not k.startswith("url_private")}
        await rig.client.file_share(bare, event_id="EvVoice2", user=OPERATOR)
        assert (await _dm_replies(rig, 2))[1] == "Remembered #1."
        assert rig.slack.called("files.info")[0].args["file"] == clip["id"]
        assert server.uploads[0].content_type == "audio/mp4"


async def test_a_slack_voice_clip_without_transcription_gets_the_how_to(tmp_path: Path) -> None:
    async with slack_rig(tmp_path) as rig:
        await rig.client.file_share(
            rig.slack.share_file(SLACK_AUDIO), event_id="EvVoice3", user=OPERATOR
        )
        [reply] = await _dm_replies(rig, 1)
        assert reply == HOW_TO_ENABLE
        assert await _count(rig, "SELECT COUNT(*) FROM inbound") == 1  # still stored
        assert await _count(rig, "SELECT COUNT(*) FROM memories") == 0
        assert not rig.slack.file_downloads  # nothing fetched for nothing


async def test_a_refused_slack_download_gets_a_clear_reply_and_runs_nothing(
    tmp_path: Path,
) -> None:
    async with TranscribeServer() as server, slack_rig(tmp_path, server) as rig:
        gone = rig.slack.share_file(SLACK_AUDIO)
        del rig.slack.file_contents[gone["id"]]  # deleted before soloops fetched it
        await rig.client.file_share(gone, event_id="EvVoice4", user=OPERATOR)
        [reply] = await _dm_replies(rig, 1)
        assert "could not transcribe" in reply and "HTTP 404" in reply
        assert "Nothing was run" in reply

        rig.slack.files_read_scope = False  # the app was installed without files:read
        await rig.client.file_share(
            rig.slack.share_file(SLACK_AUDIO), event_id="EvVoice5", user=OPERATOR
        )
        second = (await _dm_replies(rig, 2))[1]
        assert "files:read" in second and "Nothing was run" in second
        assert TOKEN not in reply + second

        elsewhere = {**rig.slack.share_file(SLACK_AUDIO), "url_private_download": FOREIGN}
        await rig.client.file_share(elsewhere, event_id="EvVoice6", user=OPERATOR)
        third = (await _dm_replies(rig, 3))[2]
        assert "not a Slack file URL" in third  # the token never went there
        assert not server.uploads
        assert await _count(rig, "SELECT COUNT(*) FROM memories") == 0
        assert await _count(rig, "SELECT COUNT(*) FROM inbound") == 3


FOREIGN = "http://127.0.0.1:9/steal-the-token"


def test_the_bot_token_goes_only_to_slack_or_the_configured_api_host() -> None:
    api = "http://127.0.0.1:4000/api/"
    assert token_may_go_to("https://files.slack.com/files-pri/T1-F1/download/a.webm", api)
    assert token_may_go_to("http://127.0.0.1:4000/files-pri/T1-F1/download/a.webm", api)
    assert not token_may_go_to("http://files.slack.com/x", api)  # not https
    assert not token_may_go_to("https://files.slack.com.evil.example/x", api)
    assert not token_may_go_to(FOREIGN, api)
    assert not token_may_go_to("not a url", api)
