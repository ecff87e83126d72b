"""A loopback OpenAI-compatible chat-completions server (aiohttp on 127.0.0.1).

Serves ``POST /v1/chat/completions`` and ``GET /v1/models``. Answers are scripted per
test and consumed in order (:meth:`LlmServer.answer`, :meth:`LlmServer.fail`,
:meth:`LlmServer.hang`); with nothing scripted it answers ``default_text``. With
``api_key`` set it wants ``Authorization: Bearer <key>`` (401 otherwise); with
``json_mode=False`` it refuses ``response_format`` with a 400, as servers without JSON
mode do. Every request is recorded in ``requests`` (headers and JSON body) so tests
can check the Authorization and Idempotency-Key headers and the repair message.

A hung answer waits on an event that only :meth:`LlmServer.close` sets: the client's
timeout ends the request, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "test-model"


@dataclass(frozen=True)
class Request:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat messages sent."""
        return list(self.body["messages"])


@dataclass
class _Reply:
    status: int = 200
    text: str = ""
    raw: str | None = None  # a whole body instead of a completion around ``text``
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    usage: tuple[int, int] | None = (12, 7)


@dataclass
class LlmServer:
    """A running loopback model server. Use ``async with LlmServer() as llm``."""

    api_key: str | None = None
    json_mode: bool = True
    models: list[str] = field(default_factory=lambda: [MODEL])
    default_text: str = "Hello from the test model."

    requests: list[Request] = field(default_factory=list)
    _script: deque[_Reply] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1; ``url`` is the API root (``.../v1``)."""
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._on_chat)
        app.router.add_get("/v1/models", self._on_models)
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

    async def __aenter__(self) -> LlmServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``LlmSettings`` fields pointing at this server."""
        values: dict[str, Any] = {"base_url": self.url, "model": MODEL, "timeout_s": 5.0}
        if self.api_key is not None:
            values["api_key"] = self.api_key
        values.update(overrides)
        return values

    # --- scripting --------------------------------------------------------------------

    def answer(self, text: str, *, usage: tuple[int, int] | None = (12, 7)) -> None:
        """Answer the next request with ``text`` and this (prompt, completion) usage."""
        self._script.append(_Reply(text=text, usage=usage))

    def answer_raw(self, body: str, status: int = 200) -> None:
        """Answer the next request with exactly ``body``."""
        self._script.append(_Reply(status=status, raw=body))

    def fail(
        self, status: int, message: str = "scripted failure", *, retry_after: str | None = None
    ) -> None:
        """Answer the next request with an OpenAI-style error."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        raw = json.dumps({"error": {"message": message, "type": "test"}})
        self._script.append(_Reply(status=status, raw=raw, headers=headers))

    def hang(self) -> None:
        """Never answer the next request (until the server closes)."""
        self._script.append(_Reply(hang=True))

    @property
    def chats(self) -> list[Request]:
        """The chat-completion requests, in order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # --- handlers ---------------------------------------------------------------------

    def _refused(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}}
        return web.json_response(body, status=401)

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request("GET", request.path, dict(request.headers), None))
        refusal = self._refused(request)
        if refusal is not None:
            return refusal
        data = [{"id": name, "object": "model"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _on_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append(Request("POST", request.path, dict(request.headers), body))
        refusal = self._refused(request)
        if refusal is not None:
            return refusal
        if not self.json_mode and isinstance(body, dict) and "response_format" in body:
            error = {"error": {"message": "response_format is not supported", "type": "x"}}
            return web.json_response(error, status=400)
        reply = self._script.popleft() if self._script else _Reply(text=self.default_text)
        if reply.hang:
            await self._released.wait()
            return web.Response(status=504, text="released")
        if reply.raw is not None:
            return web.Response(
                status=reply.status,
                text=reply.raw,
                headers=reply.headers,
                content_type="application/json",
            )
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
        }
        if reply.usage is not None:
            prompt, answer = reply.usage
            completion["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": answer,
                "total_tokens": prompt + answer,
            }
        return web.json_response(completion, status=reply.status, headers=reply.headers)
