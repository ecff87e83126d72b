"""A loopback webhook receiver: real HTTP on 127.0.0.1, scripted failures, full records.

It behaves like a well-behaved idempotent receiver: it verifies the signature the way
the README tells receivers to (written here independently of ``connectors.webhook``,
so a test that passes proves the documented scheme), processes each Idempotency-Key
once, and answers a repeated key with the original answer without processing again.
Every request is recorded, repeats included, so a test can tell "sent twice" from
"processed twice":

- ``requests``: every request in arrival order (hook POSTs and status GETs);
- ``received[key]``: every hook POST carrying that key, in order;
- ``processed[key]``: the one delivery that was processed (``dedupe=False`` turns
  the receiver naive: each POST is processed and ``process_counts`` can exceed 1);
- ``duplicates()``: keys that arrived again after they had been processed.

Failures on demand, consumed in order per path (a script for ``/status`` also
applies to ``/status/<key>``): :meth:`Provider.fail_next`, :meth:`Provider.hang_next`;
``after_processing=True`` makes the failure happen after the delivery was processed
(the request landed, its answer was lost). ``fail_rate`` fails unscripted hook POSTs
at random (a seeded RNG) before processing.

Run alone: ``python -m tests.emulators.provider --port 0 --secret S`` prints its base
URL on stdout and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from config.settings import HookSettings
from tests.emulators.loopback import serve

DEFAULT_SECRET = "provider-test-secret-0123456789"
HOOK_PATH = "/hook"
STATUS_PATH = "/status"
SIGNATURE_TOLERANCE_S = 300


@dataclass(frozen=True)
class Delivery:
    """One request as it arrived, and what the provider did with it."""

    method: str
    path: str
    key: str | None
    body: bytes
    headers: dict[str, str]
    at: float  # time.time() on arrival
    signature_valid: bool
    status: int  # what the provider answered (0: hung, never answered)
    processed: bool  # this request was the one that processed its key
    replayed: bool  # answered from a stored answer for a key already processed

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class _Script:
    status: int = 500
    retry_after: str | None = None
    body: str = ""
    hang_s: float | None = None  # set: never answer (until close, or this many seconds)
    after_processing: bool = False
    path: str = ""  # the queue it came from


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Provider:
    """A running loopback receiver. Use ``async with Provider() as p`` or the fixture."""

    secret: str = DEFAULT_SECRET
    fail_rate: float = 0.0
    seed: int = 0
    dedupe: bool = True
    # Seconds between processing a request and answering it: the window in which a
    # crash leaves an action that landed but was never confirmed.
    answer_delay_s: float = 0.0
    reject_bad_signatures: bool = True

    requests: list[Delivery] = field(default_factory=list)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    processed: dict[str, Delivery] = field(default_factory=dict)
    process_counts: Counter[str] = field(default_factory=Counter)

    _scripts: dict[str, deque[_Script]] = field(default_factory=dict)
    _answers: dict[str, _Answer] = field(default_factory=dict)
    _rng: random.Random = field(init=False)
    _runner: web.AppRunner | None = None
    _url: str = ""
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: an ephemeral port)."""
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{path:.*}", self._on_post)
        app.router.add_get(STATUS_PATH + "/{key}", self._on_status)
        self._runner, self._url = await serve(app, host, port)

    async def close(self) -> None:
        """Release hung requests and stop listening."""
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Provider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- addresses --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43817``."""
        return self._url

    @property
    def hook_url(self) -> str:
        """Where hook POSTs go by default."""
        return self._url + HOOK_PATH

    @property
    def status_url(self) -> str:
        """The status URL template, with ``{key}`` left in."""
        return self._url + STATUS_PATH + "/{key}"

    def hook(
        self,
        path: str = HOOK_PATH,
        *,
        status: bool = True,
        timeout_s: float = 5.0,
        secret: str | None = None,
    ) -> HookSettings:
        """Settings for a hook pointing at this provider."""
        return HookSettings.model_validate(
            {
                "url": self._url + path,
                "secret": secret or self.secret,
                "status_url": self.status_url if status else None,
                "timeout_s": timeout_s,
            }
        )

    # --- scripting --------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | str | None = None,
        body: str = "scripted failure",
        path: str = HOOK_PATH,
        after_processing: bool = False,
    ) -> None:
        """Answer the next ``count`` requests on ``path`` with ``status``."""
        shown = None if retry_after is None else _retry_after_text(retry_after)
        for _ in range(count):
            self._queue(path, _Script(status, shown, body, None, after_processing))

    def hang_next(
        self,
        count: int = 1,
        *,
        seconds: float | None = None,
        path: str = HOOK_PATH,
        after_processing: bool = False,
    ) -> None:
        """Never answer the next ``count`` requests on ``path`` (until close, or ``seconds``)."""
        forever = 24 * 3600.0
        for _ in range(count):
            self._queue(path, _Script(hang_s=seconds or forever, after_processing=after_processing))

    def _queue(self, path: str, script: _Script) -> None:
        self._scripts.setdefault(path, deque()).append(script)

    def _script_path(self, path: str) -> str:
        for prefix, queue in self._scripts.items():
            if queue and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                return prefix
        return ""

    def _next_script(self, path: str) -> _Script | None:
        prefix = self._script_path(path)
        if not prefix:
            return None
        script = self._scripts[prefix].popleft()
        script.path = prefix
        return script

    # --- what happened ----------------------------------------------------------------

    def deliveries(self, key: str) -> int:
        """How many hook POSTs arrived with ``key`` (failed, processed and repeated)."""
        return len(self.received.get(key, []))

    def duplicates(self) -> list[str]:
        """Keys that arrived again after they had been processed."""
        found = []
        for key, arrivals in self.received.items():
            seen = False
            for delivery in arrivals:
                if seen:
                    found.append(key)
                    break
                seen = delivery.processed
        return found

    # --- handlers ---------------------------------------------------------------------

    def _verify(self, headers: Any, key: str, body: bytes) -> bool:
        timestamp = headers.get("X-Soloops-Timestamp", "")
        given = headers.get("X-Soloops-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_S:
            return False
        material = timestamp.encode() + b"\n" + key.encode() + b"\n" + body
        digest = hmac.new(self.secret.encode(), material, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + digest, given)

    async def _on_post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        valid = key is not None and self._verify(request.headers, key, body)

        def record(status: int, *, processed: bool = False, replayed: bool = False) -> None:
            delivery = Delivery(
                "POST",
                request.path,
                key,
                body,
                dict(request.headers),
                time.time(),
                valid,
                status,
                processed,
                replayed,
            )
            self.requests.append(delivery)
            if key is not None:
                self.received.setdefault(key, []).append(delivery)
                if processed:
                    self.processed.setdefault(key, delivery)
                    self.process_counts[key] += 1

        # Scripted failures stand for the infrastructure in front of the receiver (a
        # proxy's 502, a hung load balancer): they come before any check of the request.
        script = self._next_script(request.path)
        if script is None and self.fail_rate and self._rng.random() < self.fail_rate:
            script = _Script(status=503, body="random failure")
        if script is not None and not script.after_processing:
            record(0 if script.hang_s else script.status)
            return await self._fail(script)
        refusal = None
        if key is None:
            refusal = web.json_response({"error": "Idempotency-Key header missing"}, status=400)
        elif not valid and self.reject_bad_signatures:
            refusal = web.json_response({"error": "bad signature"}, status=401)
        if refusal is not None:
            if script is not None:  # nothing was processed: the script waits for the next
                self._scripts[script.path].appendleft(script)
            record(refusal.status)
            return refusal
        assert key is not None

        answer = self._answers.get(key) if self.dedupe else None
        if answer is not None:
            record(
                answer.status if script is None else (0 if script.hang_s else script.status),
                replayed=True,
            )
            if script is not None:
                return await self._fail(script)
            return web.json_response(
                answer.body, status=answer.status, headers={"Idempotent-Replayed": "true"}
            )
        event_id = f"evt_{sum(self.process_counts.values()) + 1}"
        answer = _Answer(200, {"ok": True, "id": event_id, "key": key})
        self._answers.setdefault(key, answer)
        if script is not None:  # processed, then the answer is lost
            record(0 if script.hang_s else script.status, processed=True)
            return await self._fail(script)
        record(answer.status, processed=True)
        if self.answer_delay_s:
            await asyncio.sleep(self.answer_delay_s)
        return web.json_response(answer.body, status=answer.status)

    async def _fail(self, script: _Script) -> web.StreamResponse:
        if script.hang_s is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), script.hang_s)
            return web.Response(status=504, text="released")
        headers = {"Retry-After": script.retry_after} if script.retry_after else None
        return web.Response(status=script.status, text=script.body, headers=headers)

    async def _on_status(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        script = self._next_script(request.path)
        valid = self._verify(request.headers, key, b"")
        answer = self._answers.get(key)
        status = (0 if script.hang_s else script.status) if script else (200 if answer else 404)
        self.requests.append(
            Delivery(
                "GET",
                request.path,
                key,
                b"",
                dict(request.headers),
                time.time(),
                valid,
                status,
                False,
                False,
            )
        )
        if script is not None:
            return await self._fail(script)
        if answer is None:
            return web.json_response({"error": "unknown key"}, status=404)
        return web.json_response(answer.body, status=200)


def _retry_after_text(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


async def _serve(port: int, secret: str) -> None:
    provider = Provider(secret=secret)
    await provider.start(port=port)
    try:
        print(provider.url, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
    finally:
        await provider.close()


def main(argv: list[str] | None = None) -> None:
    """Serve a provider until SIGTERM or SIGINT; print its base URL first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.secret))


if __name__ == "__main__":
    main()
