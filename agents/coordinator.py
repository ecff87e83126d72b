"""The coordinator: turns intents into durable tasks and runs them on agents.

Every intent becomes a ``tasks`` row before any work starts. One dispatcher loop
claims runnable tasks, at most ``concurrency`` at once, and never two of the same
lane (conversation) at once, so replies come back in the order they were asked.
A task's outcome, its replies (into the outbox) and its events commit in one
transaction.

On :meth:`start`, tasks a crash left ``running`` are put back in the queue and run
again; agents make their effects idempotent per task key, so a rerun does not repeat
them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Self

from agents.actions import Propose
from agents.approvals import ApprovalDesk, decision_of
from agents.base import Agent, Decision, NeedsApproval, TaskContext
from agents.delivery import queue_reply
from agents.errors import AgentError, ConfigurationError
from agents.executor import Executor, Parked, RetryPolicy
from agents.fingerprint import fingerprint
from agents.intents import Conversation, Intent, dump_intent, load_intent
from agents.lifecycle import Lifecycle
from agents.replies import Reply, error
from agents.states import check_transition
from config import Settings
from connectors.base import Connector
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskRow, TaskState
from memory.waiting import wait_for_event

log = logging.getLogger(__name__)

ACTOR = "coordinator"


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """One line saying what went wrong, for chat; the traceback goes to the log."""
    text = " ".join(str(exc).split()) or "no details"
    reason = text if isinstance(exc, AgentError) else f"{type(exc).__name__}: {text}"
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


class Coordinator:
    """Runs tasks. Use as ``async with Coordinator(...) as coordinator``."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        agents: Sequence[Agent],
        *,
        concurrency: int = 4,
        clock: Clock | None = None,
        on_reply: Callable[[], None] = lambda: None,
        connectors: Mapping[str, Connector] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._tasks = TaskRepo(store)
        self._outbox = OutboxRepo(store)
        self._clock = clock or SystemClock()
        self._on_reply = on_reply
        settings = settings or Settings()
        self.approvals = ApprovalDesk(
            store,
            events,
            self._clock,
            default_ttl=timedelta(hours=settings.actions.approval_ttl_hours),
        )
        self.lifecycle = Lifecycle(
            store,
            events,
            self._clock,
            settings.budget_for,
            degrade_after=settings.supervisor.degrade_after_failures,
        )
        self.executor = Executor(
            store,
            events,
            self.approvals,
            self.lifecycle,
            connectors or {},
            self._clock,
            retry=RetryPolicy(
                max_attempts=settings.actions.max_attempts,
                base_s=settings.actions.retry_base_s,
                max_s=settings.actions.retry_max_s,
                call_timeout_s=settings.actions.call_timeout_s,
            ),
            breaker_threshold=settings.breaker.threshold,
            breaker_cooldown=timedelta(seconds=settings.breaker.cooldown_s),
            policies_file=settings.actions.policies_file,
            on_change=self._changed_elsewhere,
        )
        self._concurrency = concurrency
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            for kind in agent.kinds:
                if kind in self._agents:
                    raise ConfigurationError(
                        f"intent kind {kind!r} is claimed by both {self._agents[kind].name!r}"
                        f" and {agent.name!r}"
                    )
                self._agents[kind] = agent
        self._running: dict[int, asyncio.Task[None]] = {}
        self._busy_lanes: set[str] = set()
        self._claiming = 0  # tasks being moved to running: no longer queued, not yet running
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Condition()
        self._loop_task: asyncio.Task[None] | None = None
        self._accepting = False

    @property
    def store(self) -> Store:
        return self._store

    @property
    def events(self) -> EventLog:
        return self._events

    @property
    def agents(self) -> dict[str, Agent]:
        """Agents by the intent kind they handle."""
        return dict(self._agents)

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
        interrupted = await self._tasks.in_state(TaskState.RUNNING)
        if interrupted:
            async with self._store.write() as tx:
                for task in interrupted:
                    await self._move(tx, task, TaskState.QUEUED, expect=TaskState.RUNNING)
                    await self._events.append(
                        tx,
                        "task.requeued",
                        actor=ACTOR,
                        subject=f"task:{task.id}",
                        payload={
                            "kind": task.kind,
                            "reason": "interrupted",
                            "attempts": task.attempts,
                        },
                    )
            log.warning("requeued %d task(s) interrupted by a crash", len(interrupted))
        self._accepting = True
        self._loop_task = asyncio.create_task(self._dispatch_loop(), name="coordinator-dispatch")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop dispatching; give running tasks ``grace`` seconds, then interrupt them.

        Interrupted tasks are put back in the queue and resume at the next start.
        """
        self._accepting = False
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
        leftover = await self._tasks.in_state(TaskState.RUNNING)
        if leftover:
            async with self._store.write() as tx:
                for row in leftover:
                    await self._move(tx, row, TaskState.QUEUED, expect=TaskState.RUNNING)
                    await self._events.append(
                        tx,
                        "task.requeued",
                        actor=ACTOR,
                        subject=f"task:{row.id}",
                        payload={"kind": row.kind, "reason": "shutdown"},
                    )

    def agent_for(self, kind: str) -> Agent | None:
        """The agent that handles ``kind``."""
        return self._agents.get(kind)

    async def enqueue(self, tx: Transaction, intent: Intent) -> tuple[TaskRow, bool]:
        """Record a task for ``intent`` inside ``tx``; call :meth:`wake` after commit.

        Returns the task and whether it is new (False: this idempotency key exists).
        """
        agent = self._agents.get(intent.kind)
        if agent is None:
            raise ConfigurationError(f"no agent handles intent kind {intent.kind!r}")
        task, created = await self._tasks.create(
            tx,
            idempotency_key=intent.idempotency_key,
            kind=intent.kind,
            agent=agent.name,
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
                payload={"kind": intent.kind, "agent": agent.name},
            )
        return task, created

    async def submit(self, intent: Intent) -> TaskRow:
        """Record a task for ``intent`` and schedule it."""
        async with self._store.write() as tx:
            task, _ = await self.enqueue(tx, intent)
        self.wake()
        return task

    def wake(self) -> None:
        """Tell the dispatcher there may be new work."""
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
        """Due queued tasks, minus those whose agent is paused or degraded."""
        return [
            task
            for task in await self._tasks.runnable(self._clock.now())
            if not self.lifecycle.holds(task.agent, task.kind)
        ]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _dispatch_loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self._dispatch_once()
            except Exception:
                log.exception("the dispatcher failed to claim work; retrying in 1 s")
                await asyncio.sleep(1.0)
                self._wakeup.set()
            await self._notify()
            timeout = 60.0
            due = await self._tasks.next_due_at(self._clock.now())
            if due is not None:
                timeout = min(timeout, max(0.01, (due - self._clock.now()).total_seconds()))
            await wait_for_event(self._wakeup, timeout)

    async def _dispatch_once(self) -> None:
        free = self._concurrency - len(self._running)
        if free <= 0 or not self._accepting:
            return
        seen_lanes: set[str] = set()
        chosen: list[TaskRow] = []
        for task in await self._runnable():
            if task.lane in seen_lanes or task.lane in self._busy_lanes:
                seen_lanes.add(task.lane)
                continue
            seen_lanes.add(task.lane)
            chosen.append(task)
            if len(chosen) == free:
                break
        for task in chosen:
            # Until the task is in _running, wait_idle must not see the committed claim
            # (no longer queued) as idle.
            self._claiming += 1
            try:
                async with self._store.write() as tx:
                    if not await self._move(
                        tx, task, TaskState.RUNNING, expect=TaskState.QUEUED, attempt=True
                    ):
                        continue
                    await self._events.append(
                        tx,
                        "task.started",
                        actor=ACTOR,
                        subject=f"task:{task.id}",
                        payload={
                            "kind": task.kind,
                            "agent": task.agent,
                            "attempt": task.attempts + 1,
                        },
                    )
                self._busy_lanes.add(task.lane)
                runner = asyncio.create_task(self._run(task), name=f"task-{task.id}")
                self._running[task.id] = runner
            finally:
                self._claiming -= 1

    async def _run(self, task: TaskRow) -> None:
        try:
            await self._execute(task)
        finally:
            self._running.pop(task.id, None)
            self._busy_lanes.discard(task.lane)
            self.wake()
            await self._notify()

    async def _execute(self, task: TaskRow) -> None:
        try:
            ctx = TaskContext(
                task_id=task.id,
                attempt=task.attempts + 1,
                idempotency_key=task.idempotency_key,
                decision=await self._decision(task),
            )
            intent = load_intent(task.intent)
            agent = self._agents.get(intent.kind)
            if agent is None:
                raise AgentError(f"no agent handles {intent.kind!r} any more")
            checkpoint = json.loads(task.checkpoint) if task.checkpoint else {}
            if "action" in checkpoint:
                outcome = await self.executor.resume(task, agent, intent, checkpoint)
            else:
                outcome = await agent.handle(intent, ctx)
            while isinstance(outcome, Propose):
                outcome = await self.executor.start(task, agent, intent, outcome)
            if isinstance(outcome, Parked):
                return
            if isinstance(outcome, NeedsApproval):
                await self._park(task, agent, intent.conversation, outcome, ctx.decision)
                return
            replies = list(outcome)
        except asyncio.CancelledError:
            raise  # a stop: the task stays running and is requeued
        except Exception as exc:
            if isinstance(exc, AgentError):
                log.info("task %d (%s) refused: %s", task.id, task.kind, exc)
            else:
                log.exception("task %d (%s) failed", task.id, task.kind)
            await self._finish_failed(task, exc)
            return
        await self._finish_succeeded(task, replies)

    async def _decision(self, task: TaskRow) -> Decision | None:
        if not task.checkpoint:
            return None
        approval_id = json.loads(task.checkpoint).get("approval")
        if approval_id is None:
            return None
        row = await self.approvals.repo.get(int(approval_id))
        return None if row is None else decision_of(row)

    async def _park(
        self,
        task: TaskRow,
        agent: Agent,
        conversation: Conversation,
        need: NeedsApproval,
        previous: Decision | None,
    ) -> None:
        """Stop the task until the operator decides; ask with a card."""
        if previous is not None and previous.fingerprint == fingerprint(agent.name, need.action):
            raise AgentError(f"{agent.name} asked again for an approval already {previous.outcome}")
        async with self._store.write() as tx:
            if previous is not None:
                old = await self.approvals.repo.get(previous.approval_id)
                if old is not None:
                    await self.approvals.void(tx, old, "the action changed after the decision")
            approval = await self.approvals.request(
                tx, task_id=task.id, agent=agent.name, need=need, conversation=conversation
            )
            check_transition(TaskState.RUNNING, TaskState.WAITING_APPROVAL)
            await self._tasks.update(
                tx,
                task.id,
                state=TaskState.WAITING_APPROVAL,
                now=self._clock.now(),
                expect=TaskState.RUNNING,
                checkpoint=json.dumps({"approval": approval.id}),
            )
            await self._events.append(
                tx,
                "task.waiting",
                actor=ACTOR,
                subject=f"task:{task.id}",
                payload={"kind": task.kind, "approval": approval.id},
            )
        self._on_reply()

    async def _finish_succeeded(self, task: TaskRow, replies: list[Reply]) -> None:
        conversation = load_intent(task.intent).conversation
        async with self._store.write() as tx:
            await self._move(tx, task, TaskState.SUCCEEDED, expect=TaskState.RUNNING)
            await self._events.append(
                tx,
                "task.succeeded",
                actor=ACTOR,
                subject=f"task:{task.id}",
                payload={"kind": task.kind, "replies": len(replies)},
            )
            for reply in replies:
                await self._queue_reply(tx, task, conversation, reply)
        if replies:
            self._on_reply()

    async def _finish_failed(self, task: TaskRow, exc: BaseException) -> None:
        reason = short_reason(exc)
        async with self._store.write() as tx:
            await self._move(tx, task, TaskState.FAILED, expect=TaskState.RUNNING, error=reason)
            seq = await self._events.append(
                tx,
                "task.failed",
                actor=ACTOR,
                subject=f"task:{task.id}",
                payload={"kind": task.kind, "error": reason, "error_type": type(exc).__name__},
            )
            try:
                conversation = load_intent(task.intent).conversation
            except ValueError:
                return  # nowhere to answer; the event says what happened
            if isinstance(exc, AgentError):
                text = f"{reason} (event #{seq})"
            else:
                text = (
                    f"Sorry, that failed: {reason}\n"
                    f"Nothing else was changed. Event #{seq}; details: soloops events --kind task"
                )
            await self._queue_reply(tx, task, conversation, error(text))
        self._on_reply()

    async def _queue_reply(
        self, tx: Transaction, task: TaskRow, conversation: Conversation, reply: Reply
    ) -> None:
        await queue_reply(
            self._outbox, tx, conversation, reply, now=self._clock.now(), task_id=task.id
        )

    async def _move(
        self,
        tx: Transaction,
        task: TaskRow,
        new: TaskState,
        *,
        expect: TaskState,
        error: str | None = None,
        attempt: bool = False,
    ) -> bool:
        check_transition(expect, new)
        return await self._tasks.update(
            tx,
            task.id,
            state=new,
            now=self._clock.now(),
            expect=expect,
            error=error,
            attempt=attempt,
        )

    def now(self) -> datetime:
        """The coordinator's clock."""
        return self._clock.now()
