"""Wiring: the one place that builds the store, the registry, the coordinator, each
feature's agent (from its narrow ports), the gateway and the outbox from settings, and
starts and stops them in order.

    build_registry(features) -> Coordinator(registry) -> build_agents(ports_for(feature))
        -> coordinator.install(agents) -> Gateway -> start
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from agents.base import Agent
from agents.binding_port import TopicBindings
from agents.coordinator import Coordinator
from agents.digest_port import DigestSource, DueItems
from agents.errors import ConfigurationError
from agents.feature import Feature
from agents.intents import Conversation, Intent, Scheduled
from agents.model_port import ModelPort
from agents.ports import ApprovalsView, LifecycleControl, Ports, Reports, scoped_memory
from agents.registry import Registry, build_registry
from agents.schedule_port import FeatureSchedules, JobControl
from agents.scheduler import JobRun, Scheduler
from agents.voice_port import AudioSources, Parse, VoicePort
from bot.gateway import Gateway, OperatorCheck
from bot.grammar import Rejection, parse
from bot.home import prepare_home, secure_home
from bot.outbox import OutboxDispatcher, Sender
from bot.topics import binding_place
from config import ConfigError, Settings
from config.version import VERSION
from connectors.base import Connector
from connectors.llm import LanguageModel
from connectors.webhook import WebhookConnector
from memory.anchor import AnchorKeeper, anchor_path
from memory.bindings import BindingRepo
from memory.clock import Clock, SystemClock
from memory.contacts import ContactRepo
from memory.embedder import Embedder, build_embedder
from memory.events import EventLog
from memory.files import FileStore
from memory.invoices import InvoiceRepo
from memory.redact import Redactor
from memory.retention import Retention
from memory.semantic import SemanticMemory
from memory.store import Store

if TYPE_CHECKING:
    from connectors.transcribe import Transcriber
    from memory.digest_facts import DigestFacts

log = logging.getLogger(__name__)

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
    registry: Registry
    scheduler: Scheduler
    homes: tuple[Conversation, ...] = ()
    clock: Clock = field(default_factory=SystemClock)
    embedder: Embedder | None = None
    audio: AudioSources = field(default_factory=AudioSources)  # front ends add fetchers
    retention: Retention | None = None
    # What /today reads (the store's facts and the features' due items): a Slack Home
    # tab shows the same.
    digest: DigestSource | None = None

    async def settle(self) -> None:
        """Wait until queued work has run and its replies are delivered."""
        await self.coordinator.wait_idle()
        await self.outbox.drain()


def default_connectors(settings: Settings) -> dict[str, Connector]:
    """The connectors soloops runs with, built from settings (email when configured)."""
    built: dict[str, Connector] = {"webhook": WebhookConnector(settings.hooks)}
    if settings.email.configured:
        from connectors.email import EmailConnector  # aiosmtplib loads only when needed

        built["email"] = EmailConnector(settings.email)
    return built


def home_conversations(settings: Settings, platforms: Sequence[str]) -> tuple[Conversation, ...]:
    """The operator's home conversations: ``SOLOOPS_DIGEST__TO``, else each running
    platform's first operator's private chat (and the console when it runs)."""
    targets = list(settings.digest.to)
    if not targets:
        if "console" in platforms:
            targets.append("console:local")
        if "telegram" in platforms and settings.telegram.operators:
            targets.append(f"telegram:{settings.telegram.operators[0]}")
        if "slack" in platforms and settings.slack.operators:
            targets.append(f"slack:{settings.slack.operators[0]}")
    homes = []
    for target in targets:
        platform, chat, *topic = target.split(":")
        user = "operator" if platform == "console" else chat
        if platform == "telegram" and settings.telegram.operators:
            user = str(settings.telegram.operators[0])
        elif platform == "slack" and settings.slack.operators:
            user = settings.slack.operators[0]
        homes.append(
            Conversation(
                platform=platform, chat_id=chat, user_id=user, thread_id=topic[0] if topic else None
            )
        )
    return tuple(homes)


def scheduled_submitter(
    coordinator: Coordinator, registry: Registry
) -> Callable[[JobRun], Awaitable[None]]:
    """How a scheduled run becomes a task: the job's intent, keyed by job + instant.

    The payload holds the intent's fields and the ``conversation`` to answer; the
    coordinator ignores a key it already has, so submitting a run again is harmless.
    """

    async def submit(run: JobRun) -> None:
        fields = dict(run.payload)
        conversation = Conversation.model_validate(fields.pop("conversation"))
        intent = registry.intent(
            run.intent_kind,
            conversation,
            run.idempotency_key,
            scheduled=Scheduled(
                job_id=run.job_id,
                scheduled_at=run.scheduled_at,
                late=run.late,
                missed_since=run.missed_since,
                coalesced=run.coalesced,
            ),
            **fields,
        )
        await coordinator.submit(intent)

    return submit


def load_features(settings: Settings) -> list[Feature]:
    """The feature modules named in ``settings.features`` (each defines ``FEATURE``)."""
    found: list[Feature] = []
    for name in settings.features:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"SOLOOPS_FEATURES names {name!r}, which cannot be imported: {exc}"
            ) from None
        feature = getattr(module, "FEATURE", None)
        if not isinstance(feature, Feature):
            raise ConfigError(f"feature module {name!r} has no FEATURE = Feature(...)")
        found.append(feature)
    return found


@dataclass(frozen=True, slots=True)
class Services:
    """What the runtime shares among the features' ports."""

    scheduler: Scheduler
    model: LanguageModel
    files: FileStore
    homes: tuple[Conversation, ...]
    due: DueItems
    voice: VoicePort | None = None


def ports_for(
    feature: Feature,
    coordinator: Coordinator,
    memory: SemanticMemory,
    embedder: Embedder,
    settings: Settings,
    clock: Clock,
    services: Services,
) -> Ports:
    """The narrow ports ``feature``'s factory gets (control only if it declares it)."""
    store, events, registry = coordinator.store, coordinator.events, coordinator.registry
    control = None
    if feature.operator_controls:
        control = LifecycleControl(
            store,
            coordinator.lifecycle,
            coordinator.executor.policies,
            coordinator.executor.breaker_states,
            coordinator.agent_names,
            coordinator.wake,
        )
    return Ports(
        name=feature.name,
        clock=clock,
        settings=settings,
        memory=scoped_memory(feature.name, feature.namespaces, memory.space),
        approvals=ApprovalsView(store, coordinator.approvals),
        reports=Reports(store, events),
        catalog=registry.catalog,
        phrasings=registry.phrasings,
        embedder=embedder,
        make_intent=registry.intent,
        schedules=FeatureSchedules(services.scheduler, feature.name, feature.kinds),
        model=ModelPort(
            services.model,
            feature.name,
            coordinator.lifecycle,
            store,
            clock,
            model_name=settings.llm.model,
        ),
        files=services.files,
        homes=services.homes,
        recent_turns=memory.ephemeral,
        control=control,
        invoices=InvoiceRepo(store, events),
        contacts=ContactRepo(store, events),
        shared_memory=registry.shared_memory,
        digest=digest_source(settings, services.due),
        jobs=(
            JobControl(services.scheduler, services.scheduler.overview)
            if feature.scheduler_controls
            else None
        ),
        voice=services.voice if "voice" in feature.kinds else None,
        bindings=(
            TopicBindings(
                BindingRepo(store, events),
                registry.bindable,
                frozenset(f.name for f in registry.features),
                clock,
                binding_place,
            )
            # The topics feature binds; the voice feature reads where its words belong.
            if "bind" in feature.kinds or "voice" in feature.kinds
            else None
        ),
    )


def build_agents(
    coordinator: Coordinator,
    memory: SemanticMemory,
    embedder: Embedder,
    settings: Settings,
    clock: Clock,
    services: Services,
) -> dict[str, Agent]:
    """Each registered feature's agent, built by its factory from its ports."""
    return {
        feature.name: feature.build(
            ports_for(feature, coordinator, memory, embedder, settings, clock, services)
        )
        for feature in coordinator.registry.features
    }


def digest_source(settings: Settings, due: DueItems) -> DigestSource:
    """The digest's read: a snapshot of the database file, plus ``due``'s sections."""

    async def read(now: datetime) -> DigestFacts:
        from memory.reports import gather_digest_facts  # the digest's reader, when first read

        return await gather_digest_facts(
            settings.database_path,
            now=now,
            timezone=settings.timezone,
            budget_for=settings.budget_for,
        )

    return DigestSource(read, due, settings.timezone)


async def declare_jobs(
    registry: Registry, scheduler: Scheduler, settings: Settings, homes: tuple[Conversation, ...]
) -> None:
    """(Re)declare every feature's standing jobs; the scheduler keeps one per id."""
    for feature in registry.features:
        if feature.jobs is None:
            continue
        for spec in feature.jobs(settings, homes):
            await scheduler.add(replace(spec, owner=feature.name))


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


def _text_parser(registry: Registry) -> Parse:
    """The command grammar for words that did not come typed (a voice note's)."""

    def read(text: str, conversation: Conversation, key: str) -> Intent | str:
        parsed = parse(text, conversation, key, registry)
        return parsed.message if isinstance(parsed, Rejection) else parsed

    return read


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    senders: Sequence[Sender] = (),
    *,
    features: Sequence[Feature] = (),
    default_features: bool = True,
    operators: dict[str, frozenset[str]] | None = None,
    connectors: ConnectorFactory | None = None,
    clock: Clock | None = None,
    mode: str = "run",
    embedder: Embedder | None = None,
    anchor_interval_s: float = 300.0,
) -> AsyncIterator[Runtime]:
    """Open the store, start memory, the coordinator and the outbox; stop them on exit.

    ``features`` are registered beside the default ones (ops, notes, the router) and
    the ones ``settings.features`` names; ``default_features=False`` leaves the defaults
    out. Features wired wrongly (a command or kind claimed twice, a capability naming
    a connector that is not there) raise :class:`config.ConfigError` before anything
    starts.
    ``operators`` maps each platform to the user ids allowed to command. ``embedder``
    replaces the one the settings describe (tests share one model). The model loads in
    the background: nothing here waits for it. The chain anchor (``soloops.head``) is
    checked before the store opens and rewritten every ``anchor_interval_s``.

    Raises:
        CorruptDatabaseError: the database cannot be read.
        HistoryLostError: the database is behind its chain anchor (lost or replaced).
    """
    clock = clock or SystemClock()
    try:
        registry = build_registry([*load_features(settings), *features], defaults=default_features)
    except ConfigurationError as exc:
        raise ConfigError(f"soloops cannot start: {exc}") from None
    built = connectors(settings) if connectors is not None else default_connectors(settings)
    try:
        registry.check_connectors({name: c.operations for name, c in built.items()})
    except ConfigurationError as exc:
        for connector in built.values():
            await connector.aclose()
        raise ConfigError(f"soloops cannot start: {exc}") from None
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
        coordinator = Coordinator(
            store,
            events,
            registry,
            concurrency=settings.coordinator.concurrency,
            clock=clock,
            on_reply=outbox.wake,
            connectors=built,
            settings=settings,
        )
        homes = home_conversations(settings, [sender.platform for sender in senders])
        scheduler = Scheduler(
            store,
            events,
            clock,
            scheduled_submitter(coordinator, registry),
            timezone=settings.timezone,
        )
        model = LanguageModel(settings.llm)
        audio = AudioSources()
        transcriber: Transcriber | None = None
        if settings.transcribe.configured:
            from connectors.transcribe import Transcriber  # only when voice notes are set up

            transcriber = Transcriber(settings.transcribe)
        voice = VoicePort(
            audio, transcriber.transcribe if transcriber else None, _text_parser(registry)
        )
        services = Services(
            scheduler, model, FileStore(settings.files_dir), homes, DueItems(), voice
        )
        agents = build_agents(coordinator, memory, embedder, settings, clock, services)
        services.due.bind(agents)
        coordinator.install(agents)
        gateway = Gateway(
            store,
            events,
            coordinator,
            operators=OperatorCheck(operators),
            max_message_chars=settings.gateway.max_message_chars,
            on_reply=outbox.wake,
        )
        await events.record(
            "system.started", actor="soloops", payload={"version": VERSION, "mode": mode}
        )
        await anchor.start()
        # The model (torch: seconds and ~400 MB) loads when memory or free text first
        # needs it: a /help never does. The service prefetches it in the background so
        # the first /recall does not wait; so does a runtime given a loaded model.
        if mode == "run" or embedder.is_ready:
            await memory.start()
        maintenance = asyncio.create_task(
            _maintain(memory, memory_settings.eviction_interval_s), name="memory-maintenance"
        )
        await outbox.start()
        await coordinator.start()
        # After the coordinator: starting submits the runs missed while soloops was down.
        await declare_jobs(registry, scheduler, settings, homes)
        await scheduler.start()
        # Old reply bodies and message texts cleared at start, then daily (README).
        retention = Retention(
            store, events, clock, settings.retention.days, settings.retention.interval_s
        )
        runtime = Runtime(
            settings,
            store,
            events,
            coordinator,
            gateway,
            outbox,
            memory,
            registry,
            scheduler,
            homes,
            clock,
            embedder,
            audio,
            retention,
            digest_source(settings, services.due),
        )
        expiry = asyncio.create_task(_expire_approvals(runtime, clock), name="approval-expiry")
        retention.start()
        try:
            yield runtime
        finally:
            await retention.stop()
            expiry.cancel()
            maintenance.cancel()
            await asyncio.gather(expiry, maintenance, return_exceptions=True)
            await scheduler.stop()
            await coordinator.stop(settings.coordinator.shutdown_grace_s)
            await coordinator.executor.aclose()
            await model.aclose()
            if transcriber is not None:
                await transcriber.aclose()
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
