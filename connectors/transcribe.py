"""Speech to text on any OpenAI-compatible ``/audio/transcriptions`` server (httpx).

OpenAI's Whisper API, a local faster-whisper or whisper.cpp server:
``POST {base_url}/audio/transcriptions`` as multipart form data (``file``, ``model``,
``response_format=json``); the answer's ``text`` (or a plain-text body) is returned.

Errors follow :mod:`connectors.base` (HTTP mapping in :mod:`connectors.openai_http`):

    ConnectorError
    ├── TransientError               timeouts, network errors, 408/425/429/5xx
    └── PermanentError               401/403 (check SOLOOPS_TRANSCRIBE__API_KEY), 404
        │                            (check __BASE_URL and __MODEL), other 4xx (e.g. an
        │                            audio format the server cannot read), an answer
        │                            without text
        └── TranscriptionNotConfigured  no base_url set: voice notes get a reply
                                        saying how to enable transcription

The idempotency key travels as an ``Idempotency-Key`` header (transcription has no
side effect, but a server that meters by request can dedupe a retry). The API key is
sent as a bearer token and nowhere else; audio and transcripts are not logged.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from config.settings import TranscribeSettings
from connectors import openai_http
from connectors.base import ConnectorError, PermanentError
from connectors.http import OwnedClient, check_key

if TYPE_CHECKING:  # imported where a request is made: start-up never needs it
    import httpx

log = logging.getLogger(__name__)

PREFIX = "SOLOOPS_TRANSCRIBE"
MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's limit; local servers take it too


class TranscriptionNotConfigured(PermanentError):
    """No transcription server is set up."""


def check_settings(settings: TranscribeSettings) -> list[str]:
    """Problems with the transcription settings (no network); empty when not set up."""
    if not settings.base_url:
        return []
    return openai_http.key_problems(settings, PREFIX)


def transcript_text(raw: bytes, content_type: str) -> str:
    """The transcript in an answer: JSON ``{"text": ...}`` or a plain-text body."""
    text = raw.decode("utf-8", errors="replace")
    if "json" not in content_type.lower():
        return text.strip()
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise PermanentError(f"the transcription server's answer is not JSON ({exc})") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
        raise PermanentError(
            "the transcription server's answer has no 'text': check "
            f"{PREFIX}__BASE_URL (the API root, usually ending in /v1)"
        )
    return str(parsed["text"]).strip()


class Transcriber(OwnedClient):
    """Transcribes audio with one OpenAI-compatible server.

    Args:
        settings: ``Settings.transcribe``. When not :attr:`~TranscribeSettings.configured`,
            every call raises :class:`TranscriptionNotConfigured`.
        client: an httpx client to use; the caller keeps ownership. When omitted the
            transcriber opens its own and closes it in :meth:`aclose`.
    """

    name = "transcribe"
    version = "1"

    def __init__(
        self, settings: TranscribeSettings, client: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__(client)
        self._settings = settings
        self._server = openai_http.Server("the transcription server", PREFIX, settings)

    def __repr__(self) -> str:
        s = self._settings
        return f"Transcriber(base_url={s.base_url!r}, model={s.model!r})"

    @property
    def configured(self) -> bool:
        """Whether a transcription server is set up."""
        return self._settings.configured

    async def transcribe(
        self, audio: bytes, filename: str, content_type: str, *, idempotency_key: str
    ) -> str:
        """The text spoken in ``audio`` (e.g. ``voice.ogg``, ``audio/ogg``).

        Raises:
            TranscriptionNotConfigured: no server is set up.
            TransientError: try again later (timeouts, network, 429, 5xx).
            PermanentError: retrying cannot help (401/403/404, other 4xx, too large).
        """
        s = self._settings
        if not s.configured:
            raise TranscriptionNotConfigured(
                f"voice notes need a transcription server: set {PREFIX}__BASE_URL to any "
                "OpenAI-compatible API root (e.g. a local faster-whisper server)"
            )
        check_key(idempotency_key)
        if not audio:
            raise PermanentError("the audio is empty")
        if len(audio) > MAX_AUDIO_BYTES:
            raise PermanentError(
                f"the audio is {len(audio) // (1024 * 1024)} MiB; at most "
                f"{MAX_AUDIO_BYTES // (1024 * 1024)} MiB can be transcribed"
            )
        status, headers, raw = await self._server.send(
            self._client,
            "POST",
            "/audio/transcriptions",
            idempotency_key,
            files={
                "file": (filename or "audio", audio, content_type or "application/octet-stream")
            },
            data={"model": s.model, "response_format": "json"},
        )
        self._server.check(status, headers, raw)
        text = transcript_text(raw, headers.get("Content-Type", ""))
        log.info(
            "transcribed %d bytes for key %s: %d characters", len(audio), idempotency_key, len(text)
        )
        return text


async def probe(
    settings: TranscribeSettings,
    *,
    client: httpx.AsyncClient | None = None,
    sample: bytes | None = None,
) -> list[str]:
    """For ``soloops doctor --online``: can the server be reached and does it accept a key?

    Sends ``sample`` (default: a tenth of a second of silence as WAV) for transcription.
    Returns what failed, in words; empty when fine.
    """
    problems = check_settings(settings)
    if problems or not settings.configured:
        return problems or [f"no transcription server is set up ({PREFIX}__BASE_URL)"]
    async with Transcriber(settings, client) as transcriber:
        try:
            await transcriber.transcribe(
                sample if sample is not None else silence_wav(),
                "probe.wav",
                "audio/wav",
                idempotency_key="soloops-doctor",
            )
        except ConnectorError as exc:
            return [str(exc)]
    return []


def silence_wav(seconds: float = 0.1, rate: int = 16000) -> bytes:
    """A short mono 16-bit WAV of silence (for probing a server)."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()
