"""The coordinator: turns intents into durable tasks and runs them on agents.

Every intent becomes a ``tasks`` row before any work starts. One dispatcher loop
claims runnable tasks, at most ``concurrency`` at once, and never two of the same
lane (conversation) at once, so replies come back in the order they were asked.
A task's outcome, its replies (into the outbox) and its events commit in one
transaction. Every way an intent reaches an agent — a typed command, or free text the
router turned into an intent (:class:`~agents.base.Reroute`, same task) — passes the
same checks: a paused, degraded or over-budget agent holds the work, and the operator
is told once what releases it.

On :meth:`start`, tasks a crash left ``running`` are put back in the queue and run
again; agents make their effects idempotent per task key, so a rerun does not repeat
them.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Self, cast

from agents.approvals import ApprovalDesk
from agents.backoff import Backoff
from agents.base import Agent
from agents.delivery import queue_reply
from agents.errors import ConfigurationError
from agents.executor import Executor
from agents.failures import RetryPolicy
from agents.intents import Conversation, Intent, dump_intent
from agents.lifecycle import Lifecycle
from agents.policybook import PolicyBook
from agents.registry import Registry
from agents.replies import Reply
from agents.taskrun import TaskRunner
from agents.transitions import Mover
from config import Settings
from connectors.base import Connector
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.files import FileStore
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import QUEUED_TOPIC, TaskRepo, TaskRow, TaskState
from memory.waiting import wait_for_event

log = logging.getLogger(__name__)

ACTOR = "coordinator"


class Coordinator:
    """Runs tasks. Build it, :meth:`install` the agents, then ``async with coordinator``."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        registry: Registry,
        *,
        concurrency: int = 4,
        clock: Clock | None = None,
        on_reply: Callable[[], None] = lambda: None,
        connectors: Mapping[str, Connector] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self.registry = registry
        self._tasks = TaskRepo(store)
        self._outbox = OutboxRepo(store)
        self._clock = clock or SystemClock()
        self._mover = Mover(store, events, self._clock)
        self._on_reply = on_reply
        settings = settings or Settings()
        actions = settings.actions
        self.approvals = ApprovalDesk(
            store,
            events,
            self._clock,
            default_ttl=timedelta(hours=actions.approval_ttl_hours),
            files=FileStore(settings.files_dir),
            timezone=settings.timezone,
        )
        self.lifecycle = Lifecycle(
            store,
            events,
            self._clock,
            settings.budget_for,
            degrade_after=settings.supervisor.degrade_after_failures,
            control_kinds=registry.control_kinds,
        )
        policies = PolicyBook(store, events, self._clock, registry.policies, actions.policies_file)
        self.executor = Executor(
            store,
            events,
            self.approvals,
            self.lifecycle,
            policies,
            connectors or {},
            self._clock,
            capabilities=registry.capabilities,
            hints=registry.hints,
            retry=RetryPolicy(
                max_attempts=actions.max_attempts,
                backoff=Backoff(
                    actions.retry_base_s, max(actions.retry_base_s, actions.retry_max_s)
                ),
                call_timeout_s=actions.call_timeout_s,
            ),
            breaker_threshold=settings.breaker.threshold,
            breaker_cooldown=timedelta(seconds=settings.breaker.cooldown_s),
            on_change=self._changed_elsewhere,
        )
        self._concurrency = concurrency
        self._agents: dict[str, Agent] = {}
        self._runner: TaskRunner | None = None
        self._running: dict[int, asyncio.Task[None]] = {}
        self._busy_lanes: set[str] = set()
        self._claiming = 0  # tasks being moved to running: no longer queued, not yet running
        self._told_held: set[int] = set()
        self._wakeup = asyncio.Event()
        # No polling: the queue is read when something may have become runnable (a
        # task queued, as published on commit; an outside wake(); a lane freed while
        # work waited for it) or a delayed task comes due. SQLite stays the truth.
        self._dirty = True
        self._rescan = True  # also re-read when the next delayed task is due
        self._waiting_for_lane = False
        self._due_times: list[datetime] = []
        self._changed = asyncio.Condition()
        self._loop_task: asyncio.Task[None] | None = None
        self._accepting = False

    def install(self, agents: Mapping[str, Agent]) -> None:
        """Set the agents, by feature name; every registered feature needs its agent."""
        for feature in self.registry.features:
            agent = agents.get(feature.name)
            if agent is None:
                raise ConfigurationError(f"feature {feature.name!r} has no agent")
            if agent.name != feature.name:
                raise ConfigurationError(
                    f"feature {feature.name!r} built an agent named {agent.name!r}"
                )
        self._agents = dict(agents)
        self._runner = TaskRunner(
            self._store,
            self._events,
            self.registry,
            self._agents,
            self.executor,
            self.approvals,
            self.lifecycle,
            self._clock,
            self._on_reply,
            self.tell_held,
        )

    @property
    def store(self) -> Store:
        return self._store

    @property
    def events(self) -> EventLog:
        return self._events

    def agent_for(self, kind: str) -> Agent | None:
        """The agent that handles ``kind``."""
        feature = self.registry.feature_for(kind)
        return None if feature is None else self._agents.get(feature.name)

    @property
    def agent_names(self) -> tuple[str, ...]:
        """Every agent's name."""
        return tuple(feature.name for feature in self.registry.features)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _changed_elsewhere(self) -> None:
        self.wake()
        self._on_reply()

    async def start(self) -> None:
        """Requeue work a crash interrupted, then start dispatching."""
        await self.lifecycle.load()
        await self.executor.breakers.load()
        told = await self._events.query(kind="task.held")
        self._told_held = {int(e.subject.split(":", 1)[1]) for e in told}
        interrupted = await self._requeue_running("interrupted")
        if interrupted:
            log.warning("requeued %d task(s) interrupted by a crash", interrupted)
        self._accepting = True
        self._store.subscribe(QUEUED_TOPIC, self._task_queued)
        self._loop_task = asyncio.create_task(self._dispatch_loop(), name="coordinator-dispatch")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop dispatching; give running tasks ``grace`` seconds, then interrupt them.

        Interrupted tasks are put back in the queue and resume at the next start.
        """
        self._accepting = False
        self._store.unsubscribe(QUEUED_TOPIC, self._task_queued)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._requeue_running("shutdown")

    async def _requeue_running(self, reason: str) -> int:
        leftover = await self._tasks.in_state(TaskState.RUNNING)
        if leftover:
            async with self._store.write() as tx:
                for row in leftover:
                    payload: dict[str, Any] = {"kind": row.kind, "reason": reason}
                    if reason == "interrupted":
                        payload["attempts"] = row.attempts
                    await self._mover.advance(
                        tx, row.id, TaskState.QUEUED, "task.requeued", payload
                    )
        return len(leftover)

    async def enqueue(self, tx: Transaction, intent: Intent) -> tuple[TaskRow, bool]:
        """Record a task for ``intent`` inside ``tx``; call :meth:`wake` after commit.

        Returns the task and whether it is new (False: this idempotency key exists).
        """
        feature = self.registry.feature_for(intent.kind)
        if feature is None:
            raise ConfigurationError(f"no agent handles intent kind {intent.kind!r}")
        task, created = await self._tasks.create(
            tx,
            idempotency_key=intent.idempotency_key,
            kind=intent.kind,
            agent=feature.name,
            lane=intent.conversation.lane,
            intent=dump_intent(intent),
            now=self._clock.now(),
        )
        if created:
            await self._events.append(
                tx,
                "task.queued",
                actor=intent.conversation.actor,
                subject=f"task:{task.id}",
                payload={"kind": intent.kind, "agent": feature.name},
            )
            if self.lifecycle.holds(feature.name, intent.kind):
                await self.tell_held(tx, task.id, intent.kind, feature.name, intent.conversation)
        return task, created

    async def submit(self, intent: Intent) -> TaskRow:
        """Record a task for ``intent`` and schedule it."""
        async with self._store.write() as tx:
            task, _ = await self.enqueue(tx, intent)
        self.wake()
        return task

    def wake(self) -> None:
        """Tell the dispatcher there may be new work."""
        self._dirty = True
        self._wakeup.set()

    def _task_queued(self, value: object) -> None:
        _, due = cast(tuple[int, datetime | None], value)
        if due is None or due <= self._clock.now():
            self._dirty = True
        else:
            heapq.heappush(self._due_times, due)
        self._wakeup.set()

    async def wait_idle(self) -> None:
        """Return once nothing is running and nothing runnable is queued."""
        async with self._changed:
            while True:
                if not self._running and not self._claiming and not await self._runnable():
                    return
                self.wake()
                await self._changed.wait()

    async def _runnable(self) -> list[TaskRow]:
        """Due queued tasks, minus those whose agent is paused, degraded or over budget."""
        due = await self._tasks.runnable(self._clock.now())
        return [task for task in due if not self.lifecycle.holds(task.agent, task.kind)]

    async def _tell_held(self, due: list[TaskRow]) -> None:
        """Say once per held task that it waits, and what releases it."""
        for task in due:
            if task.id in self._told_held or not self.lifecycle.holds(task.agent, task.kind):
                continue
            conversation = self.registry.load_intent(task.intent).conversation
            async with self._store.write() as tx:
                # A task mid-action was held by its own budget card: that card says so.
                quiet = bool(json.loads(task.checkpoint or "{}").get("action"))
                await self.tell_held(tx, task.id, task.kind, task.agent, conversation, quiet=quiet)
            self._on_reply()

    async def tell_held(
        self,
        tx: Transaction,
        task_id: int,
        kind: str,
        agent: str,
        conversation: Conversation,
        *,
        quiet: bool = False,
    ) -> None:
        """Record (and, unless ``quiet``, say) in ``tx`` that a task waits for its agent."""
        if task_id in self._told_held:
            return
        self._told_held.add(task_id)
        await self._events.append(
            tx,
            "task.held",
            actor=ACTOR,
            subject=f"task:{task_id}",
            payload={"kind": kind, "agent": agent, "state": self.lifecycle.state(agent).value},
        )
        if not quiet:
            notice = Reply(text=self.lifecycle.held_notice(agent))
            now = self._clock.now()
            await queue_reply(self._outbox, tx, conversation, notice, now=now, task_id=task_id)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _dispatch_loop(self) -> None:
        while True:
            self._wakeup.clear()
            now = self._clock.now()
            while self._due_times and self._due_times[0] <= now:
                heapq.heappop(self._due_times)
                self._dirty = True
            try:
                if self._rescan:
                    self._rescan = False
                    self._dirty = True
                    self._due_times.clear()
                    due = await self._tasks.next_due_at(now)
                    if due is not None:
                        self._due_times.append(due)
                if self._dirty:
                    self._dirty = False
                    runnable = await self._tasks.runnable(now)
                    await self._tell_held(runnable)
                    await self._dispatch_once(runnable)
            except Exception:
                log.exception("the dispatcher failed to claim work; retrying in 1 s")
                await asyncio.sleep(1.0)
                self._rescan = True
                self._wakeup.set()
            await self._notify()
            timeout = 60.0
            if self._due_times:
                wait = (self._due_times[0] - self._clock.now()).total_seconds()
                timeout = min(timeout, max(0.01, wait))
            await wait_for_event(self._wakeup, timeout)
            if not self._wakeup.is_set():
                self._rescan = True  # a minute without news, or a delay came due

    async def _dispatch_once(self, due: list[TaskRow]) -> None:
        self._waiting_for_lane = False
        free = self._concurrency - len(self._running)
        if not self._accepting:
            return
        seen_lanes: set[str] = set()
        chosen: list[TaskRow] = []
        for task in due:
            if self.lifecycle.holds(task.agent, task.kind):
                continue
            if len(chosen) >= free or task.lane in seen_lanes or task.lane in self._busy_lanes:
                # Runnable but waiting for a lane or a free slot: look again when one frees.
                self._waiting_for_lane = True
                seen_lanes.add(task.lane)
                continue
            seen_lanes.add(task.lane)
            chosen.append(task)
        for task in chosen:
            # Until the task is in _running, wait_idle must not see the committed claim
            # (no longer queued) as idle.
            self._claiming += 1
            try:
                async with self._store.write() as tx:
                    payload = {"kind": task.kind, "agent": task.agent, "attempt": task.attempts + 1}
                    claimed = await self._mover.advance(
                        tx, task.id, TaskState.RUNNING, "task.started", payload, attempt=True
                    )
                if not claimed:
                    continue
                self._busy_lanes.add(task.lane)
                runner = asyncio.create_task(self._run(task), name=f"task-{task.id}")
                self._running[task.id] = runner
            finally:
                self._claiming -= 1

    async def _run(self, task: TaskRow) -> None:
        try:
            assert self._runner is not None, "install() the agents before start()"
            await self._runner.execute(task)
        finally:
            self._running.pop(task.id, None)
            self._busy_lanes.discard(task.lane)
            if self._waiting_for_lane:
                self._dirty = True
            self._wakeup.set()
            await self._notify()

    def now(self) -> datetime:
        """The coordinator's clock."""
        return self._clock.now()
