"""Narrow ports: what a feature's factory may hand its agent, and nothing more.

An agent never holds the coordinator, the store or another agent. Its factory gets a
:class:`Ports` and keeps what it needs:

- ``memory(namespace)``: a memory space, only for namespaces the feature declared;
  ``shared_memory``: the namespaces features share with /recall (read only);
- ``clock``; ``settings`` (read-only);
- ``approvals``: an :class:`ApprovalsView` (cards waiting, shown again);
- ``reports``: a :class:`Reports` view of tasks, deliveries, actions and events, and
  the one way to record an event of its own;
- ``control``: the :class:`LifecycleControl` port, only for a feature that declares
  ``operator_controls`` (ops): policies, agent states, budgets, breakers;
- ``catalog``, ``phrasings`` and ``make_intent``: the registry's commands, router
  phrasings and intent builder;
- ``embedder`` and ``recent_turns``: the language model and the conversations' recent
  turns (the free-text router).

- ``schedules``: the feature's own jobs on the scheduler
  (:class:`agents.schedule_port.FeatureSchedules`): a job later submits an intent;
- ``model``: the language model within the agent's spend budget
  (:class:`agents.model_port.ModelPort`);
- ``contacts``: contacts, leads and their history (:class:`memory.contacts.ContactRepo`),
  for the features that work with clients (leads, follow-ups, invoices);
- ``files``: where a reply's files (a chart, an invoice PDF) are kept before the reply
  is queued; ``homes``: the operator's home conversations (``SOLOOPS_DIGEST__TO``), for
  work that starts without a message to answer (a scheduled run, an inbound hook).
- ``voice``: fetch a voice note's audio, transcribe it, read the words with the
  command grammar (:class:`agents.voice_port.VoicePort`; the voice feature).
- ``invoices`` and ``contacts``: the business records (``memory/invoices.py``,
  ``memory/contacts.py``), for the features that keep invoices and leads.
- ``digest``: the digest's read (:class:`agents.digest_port.DigestSource`): the store's
  facts in one snapshot plus every agent's due items;
- ``jobs``: every feature's jobs (:class:`agents.schedule_port.JobControl`), only for a
  feature that declares ``scheduler_controls`` (``/schedule``).
- ``bindings``: which conversations are bound to which feature
  (:class:`agents.binding_port.TopicBindings`; ``/bind``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agents.approvals import ApprovalDesk, DecisionResult
from agents.binding_port import TopicBindings
from agents.breaker import BreakerState
from agents.digest_port import DigestSource
from agents.errors import ConfigurationError
from agents.feature import CommandSpec, Phrasings
from agents.intents import Conversation, Intent
from agents.lifecycle import AgentState, BudgetUse, Lifecycle
from agents.model_port import ModelPort
from agents.policy import Rule
from agents.policybook import PolicyBook
from agents.schedule_port import FeatureSchedules, JobControl
from agents.voice_port import VoicePort
from config import Settings
from memory.actions import ActionRepo, ActionRow
from memory.approvals import ApprovalRow
from memory.clock import Clock
from memory.contacts import ContactRepo
from memory.embedder import Embedder
from memory.ephemeral import EphemeralMemory
from memory.events import Event, EventLog
from memory.files import FileStore
from memory.invoices import InvoiceRepo
from memory.memories import MemoryRepo
from memory.outbox import DeliveryState, OutboxRepo
from memory.semantic import MemorySpace
from memory.store import Store
from memory.tasks import TaskRepo, TaskRow, TaskState


class Reports:
    """A read view of tasks, deliveries, actions and events, for reporting and undo."""

    def __init__(self, store: Store, events: EventLog) -> None:
        self._store = store
        self._events = events
        self._tasks = TaskRepo(store)
        self._actions = ActionRepo(store)

    async def task_counts(self) -> dict[TaskState, int]:
        return await self._tasks.counts()

    async def delivery_counts(self) -> dict[DeliveryState, int]:
        return await OutboxRepo(self._store).counts()

    async def memory_count(self, namespace: str) -> int:
        return await MemoryRepo(self._store).count(namespace)

    async def agent_stats(self, agent: str, since: datetime) -> tuple[datetime | None, int]:
        """(when ``agent`` last finished a task, how many of its tasks failed since)."""
        return await self._tasks.agent_stats(agent, since)

    async def dead_tasks(self, limit: int = 50) -> list[TaskRow]:
        return await self._tasks.in_state(TaskState.DEAD, limit=limit)

    async def last_undoable_action(self) -> ActionRow | None:
        return await self._actions.last_undoable()

    async def action(self, action_id: int) -> ActionRow | None:
        return await self._actions.get(action_id)

    async def last_event(self) -> int:
        return await self._events.last_seq()

    async def newest_events(self, limit: int) -> list[Event]:
        return await self._events.query(limit=limit)

    async def event(self, seq: int) -> Event | None:
        return await self._events.get(seq)

    async def record(
        self, kind: str, *, actor: str, subject: str = "", payload: dict[str, object] | None = None
    ) -> int:
        """Append one event of the agent's own (``router.decided``, ``confirm.approved``)."""
        return await self._events.record(kind, actor=actor, subject=subject, payload=payload)


class ApprovalsView:
    """Cards waiting for the operator: list them, show them again."""

    def __init__(self, store: Store, desk: ApprovalDesk) -> None:
        self._store = store
        self._desk = desk

    async def pending(self, *purposes: str) -> list[ApprovalRow]:
        """Pending cards (of these purposes, when given)."""
        if not purposes:
            return await self._desk.repo.pending()
        return [row for p in purposes for row in await self._desk.repo.pending_for(p)]

    async def edit(self, code: str, text: str, actor: str) -> DecisionResult:
        """Replace the editable text of a pending card's action (``/edit CODE text``)."""
        return await self._desk.edit(code, text, actor)

    async def withdraw(self, row: ApprovalRow, reason: str) -> DecisionResult:
        """Reject a pending card because what it asks no longer holds; says ``reason``."""
        return await self._desk.withdraw(row, reason)

    async def show_again(self, rows: Sequence[ApprovalRow], conversation: Conversation) -> None:
        """Queue ``rows``' cards again in ``conversation`` (the new copy becomes the card)."""
        async with self._store.write() as tx:
            for row in rows:
                await self._desk.resend(tx, row, conversation)


class LifecycleControl:
    """The operator's controls over agents and policies (the ops feature only)."""

    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        policies: PolicyBook,
        breakers: Callable[[], Mapping[str, BreakerState]],
        agents: Sequence[str],
        wake: Callable[[], None],
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._policies = policies
        self._breakers = breakers
        self._agents = tuple(sorted(agents))
        self._wake = wake

    @property
    def agents(self) -> tuple[str, ...]:
        """Every agent's name."""
        return self._agents

    def state(self, agent: str) -> AgentState:
        return self._lifecycle.state(agent)

    async def budget_use(self, agent: str) -> BudgetUse:
        return await self._lifecycle.budget_use(agent)

    async def set_state(self, agent: str, state: AgentState, reason: str, actor: str) -> bool:
        """Pause or resume ``agent``; False if it already was in ``state``."""
        async with self._store.write() as tx:
            changed = await self._lifecycle.set_state(tx, agent, state, reason, actor)
        self._wake()  # resumed work may run now
        return changed

    def breaker_states(self) -> dict[str, BreakerState]:
        return dict(self._breakers())

    async def rules(self) -> tuple[dict[str, Rule], dict[str, Rule]]:
        """(rules from the features and the policies file, rules changed in chat)."""
        return await self._policies.rules()

    async def set_rule(self, key: str, rule: Rule | None, actor: str) -> Rule:
        """Change a rule from chat (None: back to the default); returns the rule in force."""
        return await self._policies.set_rule(key, rule, actor)


@dataclass(frozen=True, slots=True)
class Ports:
    """What a feature's factory gets. See the module docstring for each port."""

    name: str
    clock: Clock
    settings: Settings
    memory: Callable[[str], MemorySpace]
    approvals: ApprovalsView
    reports: Reports
    catalog: tuple[CommandSpec, ...]
    phrasings: Mapping[str, Phrasings]
    embedder: Embedder
    make_intent: Callable[..., Intent]
    schedules: FeatureSchedules
    model: ModelPort
    files: FileStore
    homes: tuple[Conversation, ...] = ()
    recent_turns: EphemeralMemory | None = None
    control: LifecycleControl | None = None
    invoices: InvoiceRepo | None = None
    contacts: ContactRepo | None = None
    shared_memory: tuple[str, ...] = ()

    def require_contacts(self) -> ContactRepo:
        """The contacts and leads repository (the runtime always provides it)."""
        if self.contacts is None:
            raise ConfigurationError(f"feature {self.name!r} was built without the contacts port")
        return self.contacts

    digest: DigestSource | None = None
    jobs: JobControl | None = None
    voice: VoicePort | None = None
    bindings: TopicBindings | None = None

    def require_control(self) -> LifecycleControl:
        """The control port; only features declaring ``operator_controls`` have it."""
        if self.control is None:
            raise ConfigurationError(
                f"feature {self.name!r} has no lifecycle control port"
                " (declare operator_controls=True)"
            )
        return self.control

    def require_digest(self) -> DigestSource:
        """The digest's read port (the runtime always gives one)."""
        if self.digest is None:
            raise ConfigurationError(f"feature {self.name!r} was built without the digest port")
        return self.digest

    def require_jobs(self) -> JobControl:
        """Every feature's jobs; only features declaring ``scheduler_controls`` have it."""
        if self.jobs is None:
            raise ConfigurationError(
                f"feature {self.name!r} has no job control port (declare scheduler_controls=True)"
            )
        return self.jobs


def scoped_memory(
    feature: str, namespaces: frozenset[str], space: Callable[[str], MemorySpace]
) -> Callable[[str], MemorySpace]:
    """``space`` limited to the namespaces ``feature`` declared."""

    def open_space(namespace: str) -> MemorySpace:
        if namespace not in namespaces:
            raise ConfigurationError(
                f"feature {feature!r} opened memory namespace {namespace!r}, which it does"
                f" not declare (it declares: {', '.join(sorted(namespaces)) or 'none'})"
            )
        return space(namespace)

    return open_space
