"""A loopback OpenAI-compatible transcription server (aiohttp on 127.0.0.1).

Serves ``POST /v1/audio/transcriptions`` (multipart: ``file``, ``model``, ...). It
answers ``{"text": transcripts[audio bytes]}`` for audio it knows, ``default_text``
otherwise; scripted failures (:meth:`TranscribeServer.fail`, :meth:`TranscribeServer.hang`)
come first, in order. Every request is recorded with its headers, form fields and
file. A hung answer waits on an event only :meth:`close` sets (no sleeps).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web


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
class TranscribeServer:
    """A running loopback transcription server. ``async with TranscribeServer() as t``."""

    api_key: str | None = None
    default_text: str = "hello from the test transcriber"
    plain_text: bool = False  # answer text/plain instead of JSON
    transcripts: dict[bytes, str] = field(default_factory=dict)

    uploads: list[Upload] = field(default_factory=list)
    _script: deque[_Script] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def start(self) -> None:
        """Listen on an ephemeral port; ``url`` is the API root (``.../v1``)."""
        self._released = asyncio.Event()
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._on_transcribe)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}/v1"

    async def close(self) -> None:
        """Release hung answers and stop listening."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TranscribeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``TranscribeSettings`` fields pointing at this server."""
        values: dict[str, Any] = {"base_url": self.url, "timeout_s": 5.0}
        if self.api_key is not None:
            values["api_key"] = self.api_key
        values.update(overrides)
        return values

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
        if self.api_key is not None and (
            request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return _error(401, "Incorrect API key provided")
        if self._script:
            script = self._script.popleft()
            if script.hang:
                await self._released.wait()
                return web.Response(status=504, text="released")
            return _error(script.status, script.message)
        if "model" not in fields or not audio:
            return _error(400, "file and model are required")
        text = self.transcripts.get(audio, self.default_text)
        if self.plain_text:
            return web.Response(text=text + "\n", content_type="text/plain")
        return web.json_response({"text": text})


def _error(status: int, message: str) -> web.Response:
    body = json.dumps({"error": {"message": message, "type": "test"}})
    return web.Response(status=status, text=body, content_type="application/json")
