"""Voice notes end to end on Telegram: real PTB against the emulator (the update, getFile
and the file download), the loopback transcription server, the real gateway, voice
feature, grammar and notes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents.voice import HOW_TO_ENABLE, spoken_command
from config import Settings, TranscribeSettings
from tests.bot.test_telegram import OP, Running, running
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


def test_spoken_commands_need_no_slash() -> None:
    commands = frozenset({"remember", "recall"})
    assert spoken_command("Remember, the code is 1.", commands) == "/remember the code is 1."
    assert spoken_command("what do I know about Acme", commands) == "what do I know about Acme"
    assert spoken_command("/recall acme", commands) == "/recall acme"
