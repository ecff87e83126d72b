"""soloops's HTTP side, wired to a running soloops: health, metrics, inbound hooks.

    soloops run -> http_wanted(settings)? -> HttpServer (one per process)
        front ends register their routes (Slack /slack/events, Telegram's webhook)
        open_runtime -> serve_http(server, runtime, parts):
            /healthz  database, scheduler, each front end, model
            /metrics  MetricsSnapshot.from_store(...) + breakers + scheduler lag
            /hooks/<name>  InboundHooks -> Gateway.handle_hook (stored before the 2xx)
        server.start() ... server.stop() before the runtime closes

The server starts after the runtime opens and stops before it closes, so every
request that gets an answer meets an open store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.gateway import Outcome
from bot.health import Health, add_health_routes
from bot.http import HttpServer
from bot.inbound_hooks import Accepted, InboundHooks
from bot.metrics import MetricsSnapshot, metrics_text
from bot.refusals import RefusalBudget
from config import Settings
from memory.embedder import Embedder
from memory.reports import gather_store_metrics

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

SCHEDULER_LAG_LIMIT_S = 300.0  # a due job this late means the scheduler is not keeping up


def http_wanted(settings: Settings) -> bool:
    """Whether this process serves HTTP: Slack in HTTP mode, Telegram in webhook mode,
    inbound hooks configured, or ``SOLOOPS_HTTP__ENABLED`` (health and metrics alone)."""
    slack_http = settings.slack.bot_token is not None and not settings.slack.socket_mode
    telegram_webhook = settings.telegram.configured and settings.telegram.mode == "webhook"
    return slack_http or telegram_webhook or bool(settings.inbound) or settings.http.enabled


@runtime_checkable
class Reporting(Protocol):
    """A front end that can say whether it is taking messages."""

    platform: str

    def health_state(self) -> tuple[bool, str]:
        """``(ok, detail)`` right now, without I/O."""
        ...


def model_state(embedder: Embedder) -> tuple[bool, str]:
    """The embedding model's part: loaded, loading (healthy), or unavailable (failing)."""
    if embedder.is_ready:
        return True, f"loaded ({embedder.model_id})"
    failed: Any = getattr(embedder, "failed", None)
    if failed is not None:
        return False, f"unavailable: {type(failed).__name__}; memory search falls back to words"
    return True, f"loading ({embedder.model_id})"


def scheduler_state(running: bool, lag_s: float | None) -> tuple[bool, str]:
    """The scheduler's part from whether it runs and how late its oldest due job is."""
    if not running:
        return False, "not running"
    if lag_s is None:
        return True, "running; nothing due"
    if lag_s > SCHEDULER_LAG_LIMIT_S:
        return False, f"running, but the oldest due job is {lag_s:.0f}s late"
    return True, f"running; oldest due job {lag_s:.0f}s late"


async def scheduler_lag(runtime: Runtime) -> float | None:
    """Seconds since the oldest due job's run time (None when nothing is due)."""
    earliest = await runtime.scheduler.repo.earliest_next()
    if earliest is None:
        return None
    lag = (runtime.clock.now() - earliest).total_seconds()
    return lag if lag > 0 else None


@dataclass(frozen=True, slots=True)
class HookDesk:
    """What :class:`~bot.inbound_hooks.InboundHooks` calls: stores verified requests
    through the gateway, records refusals within a per-minute budget."""

    runtime: Runtime
    budget: RefusalBudget

    async def accept(
        self, hook: str, intent_kind: str, delivery_id: str, payload: dict[str, Any]
    ) -> Accepted:
        """Store the request and queue its work (raises if it could not be stored)."""
        runtime = self.runtime
        home = runtime.homes[0] if runtime.homes else None
        handled = await runtime.gateway.handle_hook(
            hook, intent_kind, delivery_id, payload, home, datetime.now(UTC)
        )
        if handled.outcome is Outcome.DUPLICATE:
            return Accepted("duplicate", "this delivery was taken before; nothing new runs")
        if handled.outcome is Outcome.REJECTED:
            return Accepted("invalid", handled.notice or "the payload does not fit")
        return Accepted("queued", f"queued as task {handled.task_id}")

    async def refuse(self, hook: str, reason: str, detail: str) -> None:
        """Record a refused request, unless the minute's budget is spent."""
        skipped = self.budget.admit(time.monotonic())
        if skipped is None:
            return
        await self.runtime.events.record(
            "hook.refused",
            actor=f"hook:{hook}",
            subject=f"hook:{hook}",
            payload={"reason": reason, "message": detail, "skipped_before": skipped},
        )


def add_runtime_health(health: Health, runtime: Runtime, parts: Sequence[object]) -> None:
    """Probe the database, the scheduler, each front end in ``parts`` and the model."""

    async def database() -> tuple[bool, str]:
        await runtime.store.scalar("SELECT COUNT(*) FROM tasks WHERE state = 'queued'")
        return True, "answering"

    async def scheduler() -> tuple[bool, str]:
        return scheduler_state(runtime.scheduler.running, await scheduler_lag(runtime))

    async def model() -> tuple[bool, str]:
        if runtime.embedder is None:
            return True, "not in use"
        return model_state(runtime.embedder)

    health.probe("database", database)
    health.probe("scheduler", scheduler)
    health.probe("model", model)
    for part in parts:
        if isinstance(part, Reporting):
            health.probe(part.platform, _front_end_probe(part))
        else:
            name = str(getattr(part, "platform", "front end"))
            health.report(name, True, "running")


def _front_end_probe(part: Reporting) -> Any:
    async def probe() -> tuple[bool, str]:
        return part.health_state()

    return probe


def metrics_for(runtime: Runtime) -> Any:
    """``async () -> bytes``: the Prometheus text for ``/metrics`` from the store's
    numbers (read off the loop from a snapshot), the breakers and the scheduler's lag."""

    async def metrics() -> bytes:
        now = runtime.clock.now()
        store = await gather_store_metrics(runtime.settings.database_path, now)
        breakers = {
            name: str(state)
            for name, state in runtime.coordinator.executor.breaker_states().items()
        }
        # The newest digest.sent is at most a day of events back (scanned newest first).
        sent = await runtime.events.query(kind="digest.sent", newest_first=True, limit=1)
        snapshot = MetricsSnapshot.from_store(
            store,
            breakers=breakers,
            scheduler_lag_s=(await scheduler_lag(runtime)) or 0.0,
            digest_last_sent=sent[0].ts if sent else None,
        )
        return metrics_text(snapshot)

    return metrics


@asynccontextmanager
async def serve_http(
    server: HttpServer, runtime: Runtime, parts: Sequence[object] = ()
) -> AsyncIterator[Health]:
    """Add ``/healthz``, ``/metrics`` and the inbound hooks to ``server`` (front ends
    registered their own routes already), start it, and stop it on exit."""
    health = Health(runtime.clock)
    add_runtime_health(health, runtime, parts)
    add_health_routes(server, health, metrics_for(runtime))
    if runtime.settings.inbound:
        desk = HookDesk(runtime, RefusalBudget())
        InboundHooks(runtime.settings.inbound, desk.accept, desk.refuse).register(server)
        if not runtime.homes:
            log.warning(
                "inbound hooks are configured but there is no home conversation to report "
                "to: set SOLOOPS_DIGEST__TO; until then every hook request is refused (422)"
            )
    await server.start()
    try:
        yield health
    finally:
        await server.stop()
