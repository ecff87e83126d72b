"""What the loopback HTTP emulators share: serving an aiohttp app on 127.0.0.1, and the
shape of an OpenAI-compatible server (bearer key, ``/v1`` root, error bodies, answers
that hang until :meth:`OpenAiCompatibleServer.close`, never a sleep)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from aiohttp import web


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on ``host:port`` (0: an ephemeral port); the runner and ``http://host:port``."""
    # Bind the socket ourselves: the port is known before serving, with no guessing.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    bound_host, bound_port = sock.getsockname()[:2]
    return runner, f"http://{bound_host}:{bound_port}"


def openai_error(status: int, message: str, kind: str = "test") -> web.Response:
    """An OpenAI-style error answer: ``{"error": {"message": ..., "type": ...}}``."""
    body = json.dumps({"error": {"message": message, "type": kind}})
    return web.Response(status=status, text=body, content_type="application/json")


@dataclass
class OpenAiCompatibleServer:
    """Base of the OpenAI-compatible emulators. ``async with Server() as s``; ``s.url``
    is the API root (``.../v1``).

    Subclasses add their routes in :meth:`routes` and name the settings fields that
    point at them in ``base_settings``.
    """

    base_settings: ClassVar[dict[str, Any]] = {}
    client_max_size: ClassVar[int] = 1024**2  # aiohttp's default

    api_key: str | None = None
    url: str = ""
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def routes(self, app: web.Application) -> None:
        """Add this server's handlers to ``app``."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._released = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        self._runner, root = await serve(app)
        self.url = f"{root}/v1"

    async def close(self) -> None:
        """Release hung answers and stop listening."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The settings fields pointing at this server."""
        values: dict[str, Any] = {"base_url": self.url, **self.base_settings, "timeout_s": 5.0}
        if self.api_key is not None:
            values["api_key"] = self.api_key
        values.update(overrides)
        return values

    def refused(self, request: web.Request) -> web.Response | None:
        """A 401 unless the request carries ``Authorization: Bearer <api_key>``."""
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return openai_error(401, "Incorrect API key provided", "invalid_request")

    async def hung(self) -> web.Response:
        """Wait until the server closes (the client's timeout ends the request first)."""
        await self._released.wait()
        return web.Response(status=504, text="released")
