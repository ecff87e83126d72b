"""Wiring: the one place that builds the store, the agents, the coordinator, the
gateway and the outbox from settings, and starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version

from agents.base import Agent
from agents.coordinator import Coordinator
from agents.notes import NotesAgent
from agents.ops import OpsAgent
from agents.router import RouterAgent
from bot.gateway import Gateway, OperatorCheck
from bot.intents import CATALOG
from bot.outbox import OutboxDispatcher, Sender
from config import Settings
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder, build_embedder
from memory.events import EventLog
from memory.redact import Redactor
from memory.semantic import SemanticMemory
from memory.store import Store

log = logging.getLogger(__name__)


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


def default_agents(
    store: Store, events: EventLog, clock: Clock, memory: SemanticMemory, settings: Settings
) -> list[Agent]:
    """The agents every soloops runs (the free-text router is added over them)."""
    return [
        OpsAgent(store, events, CATALOG, clock),
        NotesAgent(memory, note_after_s=settings.memory.load_note_after_s),
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
    agents: Sequence[Agent] | None = None,
    extra_agents: Sequence[Agent] = (),
    clock: Clock | None = None,
    mode: str = "run",
    embedder: Embedder | None = None,
) -> AsyncIterator[Runtime]:
    """Open the store, start memory, the coordinator and the outbox; stop them on exit.

    ``agents`` replaces the default agents (tests use it to wrap one); ``extra_agents``
    adds to them; the free-text router is added over them unless one is given.
    ``embedder`` replaces the one the settings describe (tests share one model). The
    model loads in the background: nothing here waits for it.
    """
    clock = clock or SystemClock()
    redactor = Redactor(settings.secret_values())
    memory_settings = settings.memory
    embedder = embedder or build_embedder(memory_settings.model, memory_settings.batch_size)
    async with Store.open(settings.database_path) as store:
        events = EventLog(store, redactor, clock)
        memory = SemanticMemory(
            store, events, embedder, settings.index_path, memory_settings, clock
        )
        outbox = OutboxDispatcher(store, events, {s.platform: s for s in senders}, clock=clock)
        chosen = (
            default_agents(store, events, clock, memory, settings) if agents is None else agents
        )
        every = [*chosen, *extra_agents]
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
        )
        gateway = Gateway(
            store,
            events,
            coordinator,
            operators=OperatorCheck(),
            max_message_chars=settings.gateway.max_message_chars,
            on_reply=outbox.wake,
        )
        await events.record(
            "system.started", actor="soloops", payload={"version": version("soloops"), "mode": mode}
        )
        await memory.start()
        maintenance = asyncio.create_task(
            _maintain(memory, memory_settings.eviction_interval_s), name="memory-maintenance"
        )
        await outbox.start()
        await coordinator.start()
        runtime = Runtime(settings, store, events, coordinator, gateway, outbox, memory)
        try:
            yield runtime
        finally:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            await coordinator.stop(settings.coordinator.shutdown_grace_s)
            await outbox.stop()
            await memory.close()
            await events.record("system.stopped", actor="soloops", payload={"mode": mode})
