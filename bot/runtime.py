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
from agents.router import RouterAgent
from bot.gateway import Gateway, OperatorCheck
from bot.home import prepare_home, secure_home
from bot.intents import CATALOG
from bot.outbox import OutboxDispatcher, Sender
from config import Settings
from connectors.base import Connector
from connectors.webhook import WebhookConnector
from memory.anchor import AnchorKeeper, anchor_path
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder, build_embedder
from memory.events import EventLog
from memory.redact import Redactor
from memory.semantic import SemanticMemory
from memory.store import Store

log = logging.getLogger(__name__)

AgentFactory = Callable[["AgentKit"], Sequence[Agent]]
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
    memory: SemanticMemory

    async def settle(self) -> None:
        """Wait until queued work has run and its replies are delivered."""
        await self.coordinator.wait_idle()
        await self.outbox.drain()


def default_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors soloops runs with, built from settings."""
    return {"webhook": WebhookConnector(settings.hooks)}


@dataclass(frozen=True, slots=True)
class AgentKit:
    """What building agents may use."""

    store: Store
    events: EventLog
    clock: Clock
    memory: SemanticMemory
    settings: Settings


def default_agents(kit: AgentKit) -> list[Agent]:
    """The agents every soloops runs (the free-text router is added over them)."""
    return [
        OpsAgent(kit.store, kit.events, CATALOG, kit.clock, hooks=list(kit.settings.hooks)),
        NotesAgent(kit.memory, note_after_s=kit.settings.memory.load_note_after_s),
    ]


async def _maintain(memory: SemanticMemory, interval_s: float) -> None:
    """The eviction job: expired working memories out, index saved, every interval."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            evicted = await memory.maintain()
        except Exception:
            log.exception("memory maintenance failed; trying again in %.0f s", interval_s)
        else:
            if evicted:
                log.info("evicted %d expired working memories", evicted)


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
    embedder: Embedder | None = None,
    anchor_interval_s: float = 300.0,
) -> AsyncIterator[Runtime]:
    """Open the store, start memory, the coordinator and the outbox; stop them on exit.

    ``agents`` builds the agents instead of :func:`default_agents` (tests use it to
    wrap one); the free-text router is added over them unless one handles free text.
    ``operators`` maps each platform to the user ids allowed to command. ``embedder``
    replaces the one the settings describe (tests share one model). The model loads in
    the background: nothing here waits for it. The chain anchor (``soloops.head``) is
    checked before the store opens and rewritten every ``anchor_interval_s``.

    Raises:
        CorruptDatabaseError: the database cannot be read.
        HistoryLostError: the database is behind its chain anchor (lost or replaced).
    """
    clock = clock or SystemClock()
    redactor = Redactor(settings.secret_values())
    memory_settings = settings.memory
    embedder = embedder or build_embedder(memory_settings.model, memory_settings.batch_size)
    await asyncio.to_thread(prepare_home, settings.data_dir, settings.database_path)
    async with Store.open(settings.database_path) as store:
        # The WAL and SHM files exist only now; a database made here may predate the umask.
        await asyncio.to_thread(secure_home, settings.data_dir)
        anchor = AnchorKeeper(store, anchor_path(settings.database_path), clock, anchor_interval_s)
        events = EventLog(store, redactor, clock)
        memory = SemanticMemory(
            store, events, embedder, settings.index_path, memory_settings, clock
        )
        outbox = OutboxDispatcher(store, events, {s.platform: s for s in senders}, clock=clock)
        kit = AgentKit(store, events, clock, memory, settings)
        every = list((agents or default_agents)(kit))
        if not any("free_text" in agent.kinds for agent in every):
            every.append(
                RouterAgent(
                    every,
                    embedder,
                    events,
                    ephemeral=memory.ephemeral,
                    threshold=memory_settings.router_threshold,
                    margin=memory_settings.router_margin,
                    note_after_s=memory_settings.load_note_after_s,
                    clock=clock,
                )
            )
        coordinator = Coordinator(
            store,
            events,
            every,
            concurrency=settings.coordinator.concurrency,
            clock=clock,
            on_reply=outbox.wake,
            connectors=connectors(settings)
            if connectors is not None
            else default_connectors(settings),
            settings=settings,
        )
        for agent in every:
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
        await anchor.start()
        await memory.start()
        maintenance = asyncio.create_task(
            _maintain(memory, memory_settings.eviction_interval_s), name="memory-maintenance"
        )
        await outbox.start()
        await coordinator.start()
        runtime = Runtime(settings, store, events, coordinator, gateway, outbox, memory)
        expiry = asyncio.create_task(_expire_approvals(runtime, clock), name="approval-expiry")
        try:
            yield runtime
        finally:
            expiry.cancel()
            maintenance.cancel()
            await asyncio.gather(expiry, maintenance, return_exceptions=True)
            await coordinator.stop(settings.coordinator.shutdown_grace_s)
            await coordinator.executor.aclose()
            await outbox.stop()
            await memory.close()
            await events.record("system.stopped", actor="soloops", payload={"mode": mode})
            await anchor.stop()


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
