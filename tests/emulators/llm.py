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

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from tests.emulators.loopback import OpenAiCompatibleServer, openai_error

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
class LlmServer(OpenAiCompatibleServer):
    """A running loopback model server. Use ``async with LlmServer() as llm``."""

    base_settings: ClassVar[dict[str, Any]] = {"model": MODEL}

    json_mode: bool = True
    models: list[str] = field(default_factory=lambda: [MODEL])
    default_text: str = "Hello from the test model."

    requests: list[Request] = field(default_factory=list)
    _script: deque[_Reply] = field(default_factory=deque)

    def routes(self, app: web.Application) -> None:
        """``POST /v1/chat/completions`` and ``GET /v1/models``."""
        app.router.add_post("/v1/chat/completions", self._on_chat)
        app.router.add_get("/v1/models", self._on_models)

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

    async def _on_models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Request("GET", request.path, dict(request.headers), None))
        refusal = self.refused(request)
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
        refusal = self.refused(request)
        if refusal is not None:
            return refusal
        if not self.json_mode and isinstance(body, dict) and "response_format" in body:
            return openai_error(400, "response_format is not supported", "x")
        reply = self._script.popleft() if self._script else _Reply(text=self.default_text)
        if reply.hang:
            return await self.hung()
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
