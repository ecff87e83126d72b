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
from memory.events import Draft, EventLog
from memory.files import FileStore
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import QUEUED_TOPIC, TaskRepo, TaskRow, TaskState
from memory.waiting import wait_for_event

log = logging.getLogger(__name__)

ACTOR = "coordinator"
READ_LIMIT = 1000  # queued tasks read into the ready queue at once


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
        # The ready queue: queued tasks due now, by id, kept from the commits that queue
        # them (``tasks.queued``) so a dispatch reads nothing; re-read from SQLite at
        # start, after a failure, when a delayed task comes due and when idle.
        self._queue: dict[str, dict[int, TaskRow]] = {}  # lane -> id -> task
        self._arrived: list[int] = []  # ids queued since the last round, rows not read yet
        self._rescan_queue = True
        self._queue_truncated = False
        self._started_at_once: set[int] = set()  # claimed in the transaction that queued them
        # wait_idle answers from memory while its view is complete: no delayed task that
        # time alone could make runnable, and no commit by another connection since
        # SQLite last said nothing was runnable (the store's data_version then).
        self._delayed = True  # until a rescan finds no delayed task
        self._idle_version: int | None = None
        self._changed = asyncio.Condition()
        self._loop_task: asyncio.Task[None] | None = None
        self._accepting = False
        self._inline_kinds = registry.inline_kinds

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
        lane = intent.conversation.lane
        held = self.lifecycle.holds(feature.name, intent.kind)
        # An inline kind that could start at once is written once, as finished, and put
        # back to queued only if its run does not finish here.
        inline = not held and intent.kind in self._inline_kinds and self._free_for_lane(lane)
        task, created = await self._tasks.create(
            tx,
            idempotency_key=intent.idempotency_key,
            kind=intent.kind,
            agent=feature.name,
            lane=lane,
            intent=dump_intent(intent),
            now=self._clock.now(),
            finished=inline,
        )
        if created:
            queued = Draft(
                "task.queued",
                intent.conversation.actor,
                f"task:{task.id}",
                {"kind": intent.kind, "agent": feature.name},
            )
            if inline:
                # Its lane is idle and nothing waits before it, so replies keep the order
                # they were asked in. The task (inserted as succeeded), its events and its
                # reply commit with the message; a crash before that commit loses nothing
                # acknowledged, and after it the outbox sends the reply (again at the next
                # start if the crash came first). No tasks.queued news: nothing to dispatch.
                assert self._runner is not None  # _free_for_lane checked it
                done = await self._runner.run_inline(tx, task, intent, queued)
                if done is not None:
                    return done, created
                task = await self._tasks.unfinish(tx, task)
            await self._events.append_many(tx, (queued,))
            if held:
                await self.tell_held(tx, task.id, intent.kind, feature.name, intent.conversation)
            elif self._free_for_lane(task.lane):
                await self._claim_in(tx, task)
        return task, created

    def _free_for_lane(self, lane: str) -> bool:
        """Whether a new task in ``lane`` can start at once: a free slot, the lane idle,
        nothing waiting before it in the lane (the ready queue is up to date: no round
        pending)."""
        return (
            self._accepting
            and self._runner is not None
            and not self._dirty
            and not self._waiting_for_lane
            and len(self._running) + self._claiming < self._concurrency
            and lane not in self._busy_lanes
            and not self._queue.get(lane)
        )

    async def _claim_in(self, tx: Transaction, task: TaskRow) -> None:
        """Claim a task in the transaction that queued it: one commit instead of two.

        The claim is on disk before the agent runs, as with a claim of its own; the
        runner starts once the transaction has committed.
        """
        payload = {"kind": task.kind, "agent": task.agent, "attempt": task.attempts + 1}
        if not await self._mover.advance(
            tx, task.id, TaskState.RUNNING, "task.started", payload, attempt=True
        ):
            return
        self._claiming += 1
        self._busy_lanes.add(task.lane)
        self._started_at_once.add(task.id)

        def started() -> None:
            self._claiming -= 1
            if not self._accepting:  # stopping: the next start requeues it
                self._busy_lanes.discard(task.lane)
                return
            runner = asyncio.create_task(self._run(task), name=f"task-{task.id}")
            self._running[task.id] = runner

        def undone() -> None:
            self._started_at_once.discard(task.id)
            self._claiming -= 1
            self._busy_lanes.discard(task.lane)

        tx.on_commit(started)
        tx.on_rollback(undone)

    async def submit(self, intent: Intent) -> TaskRow:
        """Record a task for ``intent`` and schedule it."""
        async with self._store.write() as tx:
            task, _ = await self.enqueue(tx, intent)
        self.wake()
        return task

    def wake(self) -> None:
        """Tell the dispatcher there may be new work (or that held work may run)."""
        self._dirty = True
        self._wakeup.set()

    def _task_queued(self, value: object) -> None:
        task_id, due = cast(tuple[int, datetime | None], value)
        if task_id in self._started_at_once:
            # Claimed (or run to its end) as it was queued: no round of the dispatcher.
            self._started_at_once.discard(task_id)
            return
        if due is None or due <= self._clock.now():
            self._arrived.append(task_id)
            self._dirty = True
        else:
            self._delayed = True
            heapq.heappush(self._due_times, due)
        self._wakeup.set()

    async def wait_idle(self) -> None:
        """Return once nothing is running and nothing runnable is queued."""
        if self._quiet():
            return
        async with self._changed:
            while True:
                version = self._store.data_version()
                runnable = await self._runnable()
                if not self._running and not self._claiming and not runnable:
                    self._idle_version = version
                    return
                known = {i for lane in self._queue.values() for i in lane} | set(self._arrived)
                if any(task.id not in known for task in runnable):
                    self._rescan = True  # queued by a path this process did not see
                self.wake()
                await self._changed.wait()

    def _quiet(self) -> bool:
        """Idle by what this process knows, and that knowledge is complete.

        Every task this process queues is published on commit (``tasks.queued``) and
        lands in the ready queue; what it cannot see are tasks queued by another
        connection (``data_version`` moved) and delayed tasks coming due (none may
        exist). Otherwise :meth:`wait_idle` reads the table, as it always did.
        """
        if not self._accepting or self._idle_version is None:
            return False
        # First: it commits finished writes, whose news may change what is below.
        unchanged = self._store.data_version() == self._idle_version
        return (
            unchanged
            and not self._running
            and not self._claiming
            and not self._arrived
            and not self._dirty
            and not self._rescan
            and not self._delayed
            and not self._due_times
            and not self._wakeup.is_set()
            and not any(self._queue.values())
        )

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
                # Also learn when the next delayed task is due (only the first is known).
                self._dirty = self._rescan_queue = self._rescan = True
            try:
                if self._rescan:
                    self._rescan = False
                    self._rescan_queue = True
                    self._dirty = True
                    self._due_times.clear()
                    due = await self._tasks.next_due_at(now)
                    if due is not None:
                        self._due_times.append(due)
                    self._delayed = due is not None
                if self._dirty:
                    self._dirty = False
                    await self._refresh_queue(now)
                    if self.lifecycle.holds_any:
                        queued = [t for lane in self._queue.values() for t in lane.values()]
                        await self._tell_held(sorted(queued, key=lambda task: task.id))
                    await self._dispatch_once()
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

    async def _refresh_queue(self, now: datetime) -> None:
        """Bring the ready queue up to date: all of it after a rescan, else only the
        tasks queued since the last round (one read by id)."""
        if self._rescan_queue:
            self._rescan_queue = False
            self._arrived.clear()
            rows = await self._tasks.runnable(now, limit=READ_LIMIT)
            self._queue = {}
            for task in rows:
                self._queue.setdefault(task.lane, {})[task.id] = task
            # More than one read's worth: read again once this much has been dispatched.
            self._queue_truncated = len(rows) >= READ_LIMIT
            return
        if self._arrived:
            ids, self._arrived = self._arrived, []
            for task in await self._tasks.queued_among(ids, now):
                self._queue.setdefault(task.lane, {})[task.id] = task
        if self._queue_truncated and not any(self._queue.values()):
            self._rescan_queue = True
            await self._refresh_queue(now)

    def _first_runnable(self, lane: dict[int, TaskRow]) -> TaskRow | None:
        """The oldest task of a lane whose agent is not held (held ones wait in place)."""
        if not self.lifecycle.holds_any:
            return lane[min(lane)]
        for task_id in sorted(lane):
            task = lane[task_id]
            if not self.lifecycle.holds(task.agent, task.kind):
                return task
        return None

    async def _dispatch_once(self) -> None:
        self._waiting_for_lane = False
        free = self._concurrency - len(self._running) - self._claiming
        if not self._accepting:
            return
        heads: list[TaskRow] = []
        for name, lane in list(self._queue.items()):
            if not lane:
                del self._queue[name]
                continue
            if name in self._busy_lanes:
                self._waiting_for_lane = True  # look again when the lane frees
                continue
            head = self._first_runnable(lane)
            if head is not None:
                heads.append(head)
        heads.sort(key=lambda task: task.id)
        if len(heads) > free:
            # Runnable but waiting for a free slot: look again when one frees.
            self._waiting_for_lane = True
            heads = heads[: max(free, 0)]
        for task in heads:
            # Until the task is in _running, wait_idle must not see the committed claim
            # (no longer queued) as idle.
            self._claiming += 1
            try:
                async with self._store.write() as tx:
                    # The row as it is now (the queue's copy may predate a change to it).
                    fresh = await self._tasks.get_in(tx, task.id)
                    claimed = False
                    if fresh is not None and fresh.state is TaskState.QUEUED:
                        task = fresh
                        payload = {
                            "kind": task.kind,
                            "agent": task.agent,
                            "attempt": task.attempts + 1,
                        }
                        moved = await self._mover.advance(
                            tx, task.id, TaskState.RUNNING, "task.started", payload, attempt=True
                        )
                        claimed = moved is not None
                self._queue.get(task.lane, {}).pop(task.id, None)  # claimed, or gone
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
            # The next task of this lane may already be in the ready queue (read at
            # start, or queued behind this one): look again, as when a slot frees.
            if self._waiting_for_lane or self._queue.get(task.lane):
                self._dirty = True
            self._wakeup.set()
            await self._notify()

    def now(self) -> datetime:
        """The coordinator's clock."""
        return self._clock.now()
