"""A loopback OpenAI-compatible transcription server (aiohttp on 127.0.0.1).

Serves ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ...). It
answers ``{"text": transcripts[audio bytes]}`` for audio it knows, ``default_text``
otherwise; scripted failures (:meth:`TranscribeServer.fail`, :meth:`TranscribeServer.hang`)
come first, in order. Every request is recorded with its headers, form fields and
file. A hung answer waits on an event only :meth:`close` sets (no sleeps).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from aiohttp import BodyPartReader, web

from tests.emulators.loopback import OpenAiCompatibleServer, openai_error


@dataclass(frozen=True)
class Upload:
    """One transcription request as it arrived."""

    headers: dict[str, str]
    fields: dict[str, str]
    filename: str | None
    content_type: str | None
    audio: bytes


@dataclass
class _Script:
    status: int = 500
    message: str = "scripted failure"
    hang: bool = False


@dataclass
class TranscribeServer(OpenAiCompatibleServer):
    """A running loopback transcription server. ``async with TranscribeServer() as t``."""

    client_max_size: ClassVar[int] = 32 * 1024 * 1024

    default_text: str = "hello from the test transcriber"
    plain_text: bool = False  # answer text/plain instead of JSON
    transcripts: dict[bytes, str] = field(default_factory=dict)

    uploads: list[Upload] = field(default_factory=list)
    _script: deque[_Script] = field(default_factory=deque)

    def routes(self, app: web.Application) -> None:
        """``POST /v1/audio/transcriptions``."""
        app.router.add_post("/v1/audio/transcriptions", self._on_transcribe)

    def fail(self, status: int, message: str = "scripted failure") -> None:
        """Answer the next request with an OpenAI-style error."""
        self._script.append(_Script(status, message))

    def hang(self) -> None:
        """Never answer the next request (until the server closes)."""
        self._script.append(_Script(hang=True))

    async def _on_transcribe(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, str] = {}
        filename = content_type = None
        audio = b""
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # a nested multipart: not ours
                continue
            if part.name == "file":
                filename = part.filename
                content_type = part.headers.get("Content-Type")
                audio = bytes(await part.read())
            elif part.name is not None:
                fields[part.name] = (await part.read()).decode()
        self.uploads.append(Upload(dict(request.headers), fields, filename, content_type, audio))
        refusal = self.refused(request)
        if refusal is not None:
            return refusal
        if self._script:
            script = self._script.popleft()
            if script.hang:
                return await self.hung()
            return openai_error(script.status, script.message)
        if "model" not in fields or not audio:
            return openai_error(400, "file and model are required")
        text = self.transcripts.get(audio, self.default_text)
        if self.plain_text:
            return web.Response(text=text + "\n", content_type="text/plain")
        return web.json_response({"text": text})
