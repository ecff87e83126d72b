"""Running one task: its agent's answer becomes replies, a card, an action or a reroute.

The coordinator claims a task and hands it here. The task ends succeeded (its
replies queued in the same transaction), refused (an operator's mistake or a policy's
no, said as is: ``task.refused``), failed, waiting for approval, or — for free text the
router turned into a typed intent — re-targeted in place and either run now or held.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agents.actions import Propose
from agents.approvals import ApprovalDesk, decision_of
from agents.base import (
    Agent,
    AgentResult,
    ApprovalDecision,
    NeedsApproval,
    Reroute,
    TaskContext,
)
from agents.delivery import queue_reply
from agents.errors import AgentError, Refusal
from agents.executor import Executor
from agents.failures import Parked
from agents.fingerprint import fingerprint
from agents.intents import Conversation, Intent, dump_intent
from agents.lifecycle import Lifecycle
from agents.registry import Registry
from agents.replies import Reply, error
from agents.states import check_transition
from agents.transitions import Mover
from memory.clock import Clock
from memory.events import Draft, EventLog
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskRow, TaskState

log = logging.getLogger(__name__)

TellHeld = Callable[..., Awaitable[None]]
COORDINATOR = "coordinator"  # the actor of a task's moves (as in agents/transitions.py)
ROUTED_ACTS = (
    "A guessed command never acts on the outside world or asks for approval."
    " Send it as a command (/help lists them)."
)


# Our own messages (refusals, agent errors) say what to type instead and may list the
# choices: they keep their lines. Anything else is one short line; the log has the rest.
OWN_MESSAGE_LIMIT = 1500


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """What went wrong, for chat; the traceback goes to the log."""
    if isinstance(exc, AgentError):
        reason = str(exc).strip() or "no details"
        limit = max(limit, OWN_MESSAGE_LIMIT)
    else:
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'}"
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


class TaskRunner:
    """Runs a claimed task on its agent and records how it ended."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        registry: Registry,
        agents: Mapping[str, Agent],
        executor: Executor,
        approvals: ApprovalDesk,
        lifecycle: Lifecycle,
        clock: Clock,
        on_reply: Callable[[], None],
        tell_held: TellHeld,
    ) -> None:
        self._store = store
        self._events = events
        self.registry = registry
        self._agents = agents
        self.executor = executor
        self.approvals = approvals
        self.lifecycle = lifecycle
        self._clock = clock
        self._on_reply = on_reply
        self._tell_held = tell_held
        self._tasks = TaskRepo(store)
        self._outbox = OutboxRepo(store)
        self._mover = Mover(store, events, clock)

    async def execute(self, task: TaskRow) -> None:
        """Run one claimed task to its next resting state."""
        try:
            ctx = TaskContext(
                task_id=task.id,
                attempt=task.attempts + 1,
                idempotency_key=task.idempotency_key,
                decision=await self._decision(task),
            )
            intent = self.registry.load_intent(task.intent)
            agent = self._agent_for(intent.kind)
            checkpoint = json.loads(task.checkpoint) if task.checkpoint else {}
            if "action" in checkpoint:
                outcome = await self.executor.resume(task, agent, intent, checkpoint)
            else:
                outcome = await agent.handle(intent, ctx)
            # A rerouted task run again (it was held, or a crash cut it short) keeps the
            # rules of its reroute: a guess never acts, a spoken command always asks.
            exact = bool(checkpoint.get("exact"))
            guessed = "rerouted_by" in checkpoint and not exact
            if guessed and isinstance(outcome, Propose | NeedsApproval):
                raise Refusal(ROUTED_ACTS)
            while isinstance(outcome, Propose):
                outcome = await self.executor.start(task, agent, intent, outcome, always_ask=exact)
            if isinstance(outcome, Reroute):
                await self._reroute(task, agent, outcome, ctx)
                return
            if isinstance(outcome, Parked):
                return
            if isinstance(outcome, NeedsApproval):
                await self._park(task, agent, intent.conversation, outcome, ctx.decision)
                return
            replies = list(outcome)
        except asyncio.CancelledError:
            raise  # a stop: the task stays running and is requeued
        except Exception as exc:
            await self._finish_failed(task, exc)
            return
        await self._finish(task, replies)

    async def run_inline(
        self, tx: Transaction, task: TaskRow, intent: Intent, queued: Draft
    ) -> TaskRow | None:
        """Run a new task of an inline kind to its end inside ``tx``, the transaction that
        queues it. ``task`` was inserted already succeeded (``TaskRepo.create(...,
        finished=True)``: one row write for queued, claimed and succeeded); this writes
        its events, ``queued`` (its ``task.queued`` event) and the rest in one insert,
        and its replies into the outbox.

        Returns the finished task, or None (nothing written here) when the agent did not
        answer with replies alone: it raised, or wants an action, an approval or a
        reroute. The caller then puts the task back to queued and the runner runs it
        again, which is harmless for an agent that only reads what it holds in memory.
        """
        agent = self._agent_for(intent.kind)
        ctx = TaskContext(
            task_id=task.id, attempt=task.attempts, idempotency_key=task.idempotency_key
        )
        try:
            outcome = await agent.handle(intent, ctx)
        except Exception:
            return None
        if isinstance(outcome, Propose | NeedsApproval | Reroute):
            return None
        replies = list(outcome)
        # The moves the row already holds, checked against the state table as moves are.
        check_transition(TaskState.QUEUED, TaskState.RUNNING)
        check_transition(TaskState.RUNNING, TaskState.SUCCEEDED)
        subject = f"task:{task.id}"
        started = {"kind": task.kind, "agent": task.agent, "attempt": task.attempts}
        succeeded = {"kind": task.kind, "replies": len(replies)}
        await self._events.append_many(
            tx,
            (
                queued,
                Draft("task.started", COORDINATOR, subject, started),
                Draft("task.succeeded", COORDINATOR, subject, succeeded),
            ),
        )
        now = self._clock.now()
        for reply in replies:
            # Claimed as queued: delivery is a send and a mark, not a claim first.
            await queue_reply(
                self._outbox, tx, intent.conversation, reply, now=now, task_id=task.id, claim=True
            )
        return task

    def _agent_for(self, kind: str) -> Agent:
        feature = self.registry.feature_for(kind)
        agent = None if feature is None else self._agents.get(feature.name)
        if agent is None:
            raise AgentError(f"no agent handles {kind!r} any more")
        return agent

    async def _reroute(
        self,
        task: TaskRow,
        router: Agent,
        reroute: Reroute,
        ctx: TaskContext,
        outer: tuple[Agent, Reroute] | None = None,
    ) -> None:
        """Run the router's choice in the same task, with the checks of a typed command.

        One more hop is allowed when the first target answers with a reroute of its own:
        a voice note's words that are free text go to the free-text router, which picks
        the intent; ``outer`` (the voice agent and its reroute) then adds its notes too.
        """
        routed = reroute.intent
        target = self._agent_for(routed.kind)
        if routed.idempotency_key != task.idempotency_key:
            raise AgentError("a rerouted intent must keep its task's idempotency key")
        async with self._store.write() as tx:
            await self._tasks.retarget(
                tx, task.id, kind=routed.kind, agent=target.name, intent=dump_intent(routed)
            )
            marks: dict[str, Any] = {"rerouted_by": router.name, "memo": reroute.memo}
            if reroute.exact and outer is None:
                marks["exact"] = True
            await self._tasks.set_checkpoint(tx, task.id, json.dumps(marks))
            await self._events.append(
                tx,
                "task.rerouted",
                actor=router.name,
                subject=f"task:{task.id}",
                payload={"from": task.kind, "kind": routed.kind, "agent": target.name},
            )
            if self.lifecycle.holds(target.name, routed.kind):
                await self._mover.advance(tx, task.id, TaskState.QUEUED, None, {})
                await self._tell_held(
                    tx, task.id, routed.kind, target.name, routed.conversation, quiet=False
                )
                held = True
            else:
                held = False
        if held:
            self._on_reply()
            return
        outcome = await target.handle(routed, ctx)
        if isinstance(outcome, Reroute) and outer is None:
            await self._reroute(task, target, outcome, ctx, outer=(router, reroute))
            return
        if isinstance(outcome, Propose | NeedsApproval) and reroute.exact and outer is None:
            await self._act_as_spoken(task, target, routed, outcome, ctx)
            return
        if isinstance(outcome, Reroute | Propose | NeedsApproval):
            raise Refusal(ROUTED_ACTS)
        replies = await router.after_reroute(routed, list(outcome), reroute.memo)
        if outer is not None:
            replies = await outer[0].after_reroute(outer[1].intent, replies, outer[1].memo)
        await self._finish(task, replies)

    async def _act_as_spoken(
        self,
        task: TaskRow,
        agent: Agent,
        intent: Intent,
        outcome: Propose | NeedsApproval,
        ctx: TaskContext,
    ) -> None:
        """A spoken command's action or question: its card, as for the typed command,
        except that an action always waits for approval."""
        result: AgentResult | Parked = outcome
        while isinstance(result, Propose):
            result = await self.executor.start(task, agent, intent, result, always_ask=True)
        if isinstance(result, Parked):
            return
        if isinstance(result, NeedsApproval):
            await self._park(task, agent, intent.conversation, result, ctx.decision)
            return
        if isinstance(result, Reroute):
            raise Refusal(ROUTED_ACTS)
        await self._finish(task, list(result))

    async def _after_held_reroute(self, task: TaskRow, replies: list[Reply]) -> list[Reply]:
        """Replies of a rerouted task that was held: the router still adds its notes."""
        checkpoint = json.loads(task.checkpoint) if task.checkpoint else {}
        by = checkpoint.get("rerouted_by")
        if by is None or by not in self._agents:
            return replies
        routed = self.registry.load_intent(task.intent)
        return await self._agents[by].after_reroute(routed, replies, checkpoint.get("memo", {}))

    async def _decision(self, task: TaskRow) -> ApprovalDecision | None:
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
        previous: ApprovalDecision | None,
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
            payload = {"kind": task.kind, "approval": approval.id}
            await self._mover.advance(
                tx,
                task.id,
                TaskState.WAITING_APPROVAL,
                "task.waiting",
                payload,
                checkpoint={"approval": approval.id},
            )
        self._on_reply()

    async def _finish(self, task: TaskRow, replies: list[Reply]) -> None:
        if task.checkpoint and "rerouted_by" in task.checkpoint:
            replies = await self._after_held_reroute(task, replies)
        conversation = self.registry.load_intent(task.intent).conversation
        async with self._store.write() as tx:
            payload = {"kind": task.kind, "replies": len(replies)}
            await self._mover.advance(tx, task.id, TaskState.SUCCEEDED, "task.succeeded", payload)
            for reply in replies:
                await self._queue_reply(tx, task, conversation, reply)
        if replies:
            self._on_reply()

    async def _finish_failed(self, task: TaskRow, exc: BaseException) -> None:
        """A refusal is said as is (``task.refused``); anything else is a failure."""
        reason = short_reason(exc)
        refused = isinstance(exc, Refusal)
        if refused:
            log.info("task %d (%s) refused: %s", task.id, task.kind, exc)
        elif isinstance(exc, AgentError):
            log.info("task %d (%s) failed: %s", task.id, task.kind, exc)
        else:
            log.exception("task %d (%s) failed", task.id, task.kind)
        async with self._store.write() as tx:
            payload = {"kind": task.kind, "error": reason, "error_type": type(exc).__name__}
            state, event = (
                (TaskState.REFUSED, "task.refused")
                if refused
                else (TaskState.FAILED, "task.failed")
            )
            moved = await self._mover.advance(tx, task.id, state, event, payload, error=reason)
            seq = None if moved is None else moved.seq
            try:
                conversation = self.registry.load_intent(task.intent).conversation
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
