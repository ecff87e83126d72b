"""The transcription client over real HTTP to a loopback OpenAI-compatible server."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from config import TranscribeSettings
from connectors.base import PermanentError, TransientError
from connectors.transcribe import (
    Transcriber,
    TranscriptionNotConfigured,
    check_settings,
    probe,
    silence_wav,
    transcript_text,
)
from tests.emulators.transcribe import TranscribeServer

API_KEY = "sk-whisper-0123456789abcdef"
VOICE = b"OggS\x00\x02" + bytes(range(200)) * 5


@pytest.fixture
async def server() -> AsyncIterator[TranscribeServer]:
    async with TranscribeServer(api_key=API_KEY, transcripts={VOICE: "Invoice Ada 500 euros"}) as s:
        yield s


def transcriber_for(server: TranscribeServer, **overrides: Any) -> Transcriber:
    return Transcriber(TranscribeSettings.model_validate(server.settings(**overrides)))


def test_transcript_text() -> None:
    assert transcript_text(b'{"text": " hi there "}', "application/json") == "hi there"
    assert transcript_text(b"hi there\n", "text/plain; charset=utf-8") == "hi there"
    with pytest.raises(PermanentError, match="has no 'text'"):
        transcript_text(b'{"segments": []}', "application/json")


def test_check_settings() -> None:
    assert check_settings(TranscribeSettings()) == []
    assert check_settings(TranscribeSettings(base_url="http://127.0.0.1:8000/v1")) == []
    assert check_settings(TranscribeSettings(base_url="https://api.openai.com/v1")) == [
        "SOLOOPS_TRANSCRIBE__API_KEY is not set, and api.openai.com needs one"
    ]


async def test_success_sends_the_file_model_key_and_headers(server: TranscribeServer) -> None:
    async with transcriber_for(server) as transcriber:
        assert (transcriber.name, transcriber.version) == ("transcribe", "1")
        text = await transcriber.transcribe(
            VOICE, "voice.ogg", "audio/ogg", idempotency_key="tg:42:voice"
        )
    assert text == "Invoice Ada 500 euros"
    [upload] = server.uploads
    assert upload.audio == VOICE
    assert (upload.filename, upload.content_type) == ("voice.ogg", "audio/ogg")
    assert upload.fields["model"] == "whisper-1"
    assert upload.headers["Authorization"] == f"Bearer {API_KEY}"
    assert upload.headers["Idempotency-Key"] == "tg:42:voice"


async def test_a_plain_text_answer_works_too() -> None:
    async with TranscribeServer(plain_text=True) as server:
        async with transcriber_for(server, model="large-v3") as transcriber:
            assert await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")
        assert server.uploads[0].fields["model"] == "large-v3"


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_transient(server: TranscribeServer, status: int) -> None:
    server.fail(status, "GPU busy")
    async with transcriber_for(server) as transcriber:
        with pytest.raises(TransientError, match=f"answered {status}: GPU busy"):
            await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")


async def test_400_is_permanent_quoting_the_server(server: TranscribeServer) -> None:
    server.fail(400, "Invalid file format. Supported formats: flac, mp3, ogg, wav")
    async with transcriber_for(server) as transcriber:
        with pytest.raises(PermanentError, match="answered 400: Invalid file format"):
            await transcriber.transcribe(VOICE, "v.xyz", "audio/x-xyz", idempotency_key="k")


async def test_a_slow_server_times_out_as_transient(server: TranscribeServer) -> None:
    server.hang()
    async with transcriber_for(server, timeout_s=0.2) as transcriber:
        with pytest.raises(TransientError, match=r"did not answer within 0\.2s"):
            await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")


async def test_unreachable_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = TranscribeSettings(base_url=f"http://127.0.0.1:{port}/v1")
    async with Transcriber(settings) as transcriber:
        with pytest.raises(TransientError, match="could not reach the transcription server"):
            await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")


async def test_a_wrong_key_is_permanent_names_the_setting_and_is_never_shown(
    server: TranscribeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-whisper-key-000"
    async with transcriber_for(server, api_key=wrong) as transcriber:
        with pytest.raises(PermanentError, match="check SOLOOPS_TRANSCRIBE__API_KEY") as err:
            await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")
    for text in [str(err.value), repr(transcriber), *(r.getMessage() for r in caplog.records)]:
        assert wrong not in text and API_KEY not in text


async def test_not_configured_says_how_to_enable_it() -> None:
    async with Transcriber(TranscribeSettings()) as transcriber:
        assert not transcriber.configured
        with pytest.raises(TranscriptionNotConfigured, match="SOLOOPS_TRANSCRIBE__BASE_URL"):
            await transcriber.transcribe(VOICE, "v.ogg", "audio/ogg", idempotency_key="k")


async def test_empty_audio_is_permanent(server: TranscribeServer) -> None:
    async with transcriber_for(server) as transcriber:
        with pytest.raises(PermanentError, match="empty"):
            await transcriber.transcribe(b"", "v.ogg", "audio/ogg", idempotency_key="k")
    assert server.uploads == []


async def test_probe(server: TranscribeServer) -> None:
    assert await probe(TranscribeSettings.model_validate(server.settings())) == []
    assert server.uploads[-1].audio == silence_wav()
    assert server.uploads[-1].content_type == "audio/wav"
    problems = await probe(
        TranscribeSettings.model_validate(server.settings(api_key="sk-nope-123"))
    )
    assert len(problems) == 1 and "401" in problems[0]
    assert await probe(TranscribeSettings()) == [
        "no transcription server is set up (SOLOOPS_TRANSCRIBE__BASE_URL)"
    ]
