"""Health and metrics over HTTP: ``GET /healthz`` and ``GET /metrics``.

Parts of soloops (``database``, ``scheduler``, each front end ``telegram`` / ``slack``
/ ``console``, ``model``) report their state to a :class:`Health` registry as it
changes, and may also register an async probe that is asked at each ``/healthz``.
``/healthz`` answers 200 with every part's state when all are healthy, 503 naming the
failing parts otherwise (a load balancer or uptime monitor needs only the status).

``/metrics`` answers what an injected ``async () -> bytes`` returns (Prometheus text
from prometheus-client); without one the route does not exist (404).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from bot.http import HttpServer
from memory.clock import Clock, SystemClock, to_iso

log = logging.getLogger(__name__)

HEALTHZ_PATH = "/healthz"
METRICS_PATH = "/metrics"
# The text format prometheus-client's generate_latest() writes. (Its CONTENT_TYPE_LATEST
# says version=1.0.0 since 0.22; 0.0.4 is what every scraper reads.)
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PROBE_TIMEOUT_S = 2.0
MAX_DETAIL_CHARS = 300

Probe = Callable[[], Awaitable[tuple[bool, str]]]
"""Asked at each ``/healthz``: ``(ok, detail)``. Raising or outlasting the timeout is unhealthy."""

Metrics = Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class PartState:
    """One part's last known health."""

    ok: bool
    detail: str
    since: datetime  # when it last changed between healthy and unhealthy

    def as_json(self) -> dict[str, Any]:
        """The part as ``/healthz`` shows it."""
        return {"ok": self.ok, "detail": self.detail, "since": to_iso(self.since)}


def verdict(parts: Mapping[str, PartState]) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` status and body for these states: 200 if all are ok, else 503."""
    failing = sorted(name for name, state in parts.items() if not state.ok)
    body: dict[str, Any] = {
        "status": "failing" if failing else "ok",
        "failing": failing,
        "parts": {name: parts[name].as_json() for name in sorted(parts)},
    }
    return (503 if failing else 200), body


class Health:
    """The registry parts report to (see the module docstring).

    Args:
        clock: for the ``since`` of each state (tests pin it).
        probe_timeout_s: how long one probe may take before it counts as failing.
    """

    def __init__(
        self, clock: Clock | None = None, *, probe_timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        self._clock = clock or SystemClock()
        self._timeout_s = probe_timeout_s
        self._parts: dict[str, PartState] = {}
        self._probes: dict[str, Probe] = {}

    def expect(self, *parts: str) -> None:
        """Name parts that must report before soloops counts as healthy."""
        for part in parts:
            if part not in self._parts:
                self._set(part, False, "has not reported yet")

    def report(self, part: str, ok: bool, detail: str = "") -> None:
        """Record ``part``'s state now (e.g. ``report("telegram", False, "unreachable")``)."""
        self._set(part, ok, detail)

    def probe(self, part: str, probe: Probe) -> None:
        """Ask ``probe`` about ``part`` at each check (replaces an earlier probe)."""
        self._probes[part] = probe

    def states(self) -> dict[str, PartState]:
        """The last known state of every part, without probing."""
        return dict(self._parts)

    async def check(self) -> dict[str, PartState]:
        """Run every probe (concurrently, each bounded), record and return all states."""
        names = list(self._probes)
        results = await asyncio.gather(*(self._run(name) for name in names))
        for name, (ok, detail) in zip(names, results, strict=True):
            self._set(name, ok, detail)
        return self.states()

    async def _run(self, name: str) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self._timeout_s):
                ok, detail = await self._probes[name]()
        except TimeoutError:
            return False, f"probe did not answer within {self._timeout_s:g}s"
        except Exception as exc:  # a broken probe is an unhealthy part
            log.warning("health probe %s failed: %s", name, type(exc).__name__)
            return False, f"probe failed ({type(exc).__name__})"
        return bool(ok), detail

    def _set(self, part: str, ok: bool, detail: str) -> None:
        detail = " ".join(detail.split())[:MAX_DETAIL_CHARS]
        before = self._parts.get(part)
        since = before.since if before is not None and before.ok == ok else self._clock.now()
        if before is None or before.ok != ok:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "health: %s %s %s",
                part,
                "ok" if ok else "failing",
                detail,
            )
        self._parts[part] = PartState(ok=ok, detail=detail, since=since.astimezone(UTC))


def add_health_routes(server: HttpServer, health: Health, metrics: Metrics | None = None) -> None:
    """Serve ``GET /healthz`` from ``health`` and, if given, ``GET /metrics`` from ``metrics``."""

    async def healthz(request: web.Request) -> web.Response:
        status, body = verdict(await health.check())
        return web.Response(
            status=status,
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    server.add_route("GET", HEALTHZ_PATH, healthz)
    if metrics is None:
        return

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            status=200,
            body=await metrics(),
            headers={"Content-Type": METRICS_CONTENT_TYPE, "Cache-Control": "no-store"},
        )

    server.add_route("GET", METRICS_PATH, serve_metrics)
