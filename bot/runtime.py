"""Wiring: the one place that builds the store, the agents, the coordinator, the
gateway and the outbox from settings, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version

from agents.base import Agent
from agents.coordinator import Coordinator
from agents.notes import NotesAgent
from agents.ops import OpsAgent
from bot.gateway import Gateway, OperatorCheck
from bot.intents import CATALOG
from bot.outbox import OutboxDispatcher, Sender
from config import Settings
from connectors.base import Connector
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.redact import Redactor
from memory.store import Store

log = logging.getLogger(__name__)

AgentFactory = Callable[[Store, EventLog, Clock], Sequence[Agent]]
ConnectorFactory = Callable[[Settings], Mapping[str, Connector]]


@dataclass(frozen=True, slots=True)
class Runtime:
    """A running soloops."""

    settings: Settings
    store: Store
    events: EventLog
    coordinator: Coordinator
    gateway: Gateway
    outbox: OutboxDispatcher

    async def settle(self) -> None:
        """Wait until queued work has run and its replies are delivered."""
        await self.coordinator.wait_idle()
        await self.outbox.drain()


def default_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors soloops runs with, built from settings."""
    return {}


def default_agents(store: Store, events: EventLog, clock: Clock) -> Sequence[Agent]:
    """The agents every soloops runs."""
    return [
        OpsAgent(store, events, CATALOG, clock),
        NotesAgent(store, events, clock),
    ]


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    senders: Sequence[Sender] = (),
    *,
    agents: AgentFactory | None = None,
    operators: dict[str, frozenset[str]] | None = None,
    connectors: ConnectorFactory | None = None,
    clock: Clock | None = None,
    mode: str = "run",
) -> AsyncIterator[Runtime]:
    """Open the store, start the coordinator and the outbox; stop them on exit.

    ``agents`` builds the agents instead of :func:`default_agents` (tests use it to
    wrap one). ``operators`` maps each platform to the user ids allowed to command.
    """
    clock = clock or SystemClock()
    redactor = Redactor(settings.secret_values())
    async with Store.open(settings.database_path) as store:
        events = EventLog(store, redactor, clock)
        outbox = OutboxDispatcher(store, events, {s.platform: s for s in senders}, clock=clock)
        built = (agents or default_agents)(store, events, clock)
        coordinator = Coordinator(
            store,
            events,
            built,
            concurrency=settings.coordinator.concurrency,
            clock=clock,
            on_reply=outbox.wake,
            connectors=connectors(settings)
            if connectors is not None
            else default_connectors(settings),
            settings=settings,
        )
        for agent in built:
            if isinstance(agent, OpsAgent):
                agent.bind(coordinator)
        gateway = Gateway(
            store,
            events,
            coordinator,
            operators=OperatorCheck(operators),
            max_message_chars=settings.gateway.max_message_chars,
            on_reply=outbox.wake,
        )
        await events.record(
            "system.started", actor="soloops", payload={"version": version("soloops"), "mode": mode}
        )
        await outbox.start()
        await coordinator.start()
        runtime = Runtime(settings, store, events, coordinator, gateway, outbox)
        expiry = asyncio.create_task(_expire_approvals(runtime, clock), name="approval-expiry")
        try:
            yield runtime
        finally:
            expiry.cancel()
            await asyncio.gather(expiry, return_exceptions=True)
            await coordinator.stop(settings.coordinator.shutdown_grace_s)
            await coordinator.executor.aclose()
            await outbox.stop()
            await events.record("system.stopped", actor="soloops", payload={"mode": mode})


async def _expire_approvals(runtime: Runtime, clock: Clock, poll_s: float = 60.0) -> None:
    """Expire approvals when their time is up (expiry counts as a rejection)."""
    desk = runtime.coordinator.approvals
    while True:
        try:
            if await desk.expire_due():
                runtime.coordinator.wake()
                runtime.outbox.wake()
            upcoming = await desk.next_expiry()
        except Exception:
            log.exception("approval expiry failed; trying again in %.0f s", poll_s)
            upcoming = None
        wait = poll_s
        if upcoming is not None:
            wait = min(poll_s, max(0.2, (upcoming - clock.now()).total_seconds()))
        await asyncio.sleep(wait)
