"""The executor: takes a proposed action from the gate to the outside world, once.

    Propose ─> capability check ─> policy gate ──deny──> refused
                                     │ approve ─> card; the task waits (checkpoint)
                                     │ auto
                                     v
           action row committed (approved) ─> budget ─> breaker ─> in_flight committed
               ─> connector.execute(key) ─> succeeded committed ─> agent.on_action
                                          ─> failure path (agents/failures.py)

The task's checkpoint names its action, so a resumed task (after an approval, a retry
delay or a crash) continues from the action row and never re-runs the agent's steps
before the gate. An action found ``in_flight`` after a crash is reconciled: the
connector is asked about the idempotency key; if it cannot tell, the operator gets a
Mark done / Retry card. Never a blind resend. The rules are kept by
``agents/policybook.py``; the gate is a plain function (``agents/policy.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from agents.actions import Propose, action_spec
from agents.approvals import ApprovalDesk
from agents.base import ActionReport, Agent, AgentResult, NeedsApproval
from agents.breaker import BreakerState
from agents.breakers import BreakerBoard
from agents.cards import register_card_handlers
from agents.errors import AgentError, Refusal
from agents.failures import PARKED, FailurePath, Parked, RetryPolicy
from agents.fingerprint import fingerprint
from agents.intents import Conversation, Intent
from agents.lifecycle import Lifecycle
from agents.policy import GateDecision, Mode, gate_decision
from agents.policybook import PolicyBook
from agents.transitions import Mover
from connectors.base import Connector, Known, PermanentError, TransientError
from memory.actions import ActionRepo, ActionRow, ActionState
from memory.approvals import ApprovalState
from memory.clock import Clock
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskRow, TaskState

log = logging.getLogger(__name__)
ACTOR = "coordinator"
_GATE_STATE = {
    Mode.AUTO: ActionState.APPROVED,
    Mode.APPROVE: ActionState.PENDING_APPROVAL,
    Mode.DENY: ActionState.REJECTED,
}


class Executor:
    """Runs actions for the coordinator."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        desk: ApprovalDesk,
        lifecycle: Lifecycle,
        policies: PolicyBook,
        connectors: Mapping[str, Connector],
        clock: Clock,
        *,
        capabilities: Callable[[str], frozenset[tuple[str, str]]],
        hints: Mapping[tuple[str, str], str] | None = None,
        retry: RetryPolicy | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown: timedelta = timedelta(seconds=30),
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._events = events
        self._desk = desk
        self._lifecycle = lifecycle
        self.policies = policies
        self._connectors = dict(connectors)
        self._clock = clock
        self._capabilities = capabilities
        self._retry = retry or RetryPolicy()
        self._actions = ActionRepo(store)
        self._tasks = TaskRepo(store)
        self._mover = Mover(store, events, clock)
        self._on_change = on_change
        self.breakers = BreakerBoard(
            store,
            clock,
            self._connectors,
            threshold=breaker_threshold,
            cooldown=breaker_cooldown,
        )
        self.failures = FailurePath(
            store,
            events,
            self._mover,
            desk,
            lifecycle,
            policies,
            clock,
            retry=self._retry,
            breakers=self.breakers,
            hints=hints or {},
            on_change=on_change,
        )
        register_card_handlers(desk, self._mover, lifecycle, on_change)

    async def aclose(self) -> None:
        """Close every connector."""
        for connector in self._connectors.values():
            await connector.aclose()

    def breaker_states(self) -> dict[str, BreakerState]:
        """Each connector, and each endpoint whose breaker is not closed (``webhook:crm``)."""
        return self.breakers.states()

    async def start(
        self,
        task: TaskRow,
        agent: Agent,
        intent: Intent,
        proposal: Propose,
        *,
        always_ask: bool = False,
    ) -> AgentResult | Parked:
        """Gate a freshly proposed action and carry it out (or park the task).

        ``always_ask``: an action the policy would run at once waits for approval
        instead (a spoken command); one the policy denies stays denied.
        """
        action = proposal.action
        if (action.connector, action.operation) not in self._capabilities(agent.name):
            await self._events.record(
                "action.refused",
                actor=agent.name,
                subject=f"task:{task.id}",
                payload={
                    "connector": action.connector,
                    "operation": action.operation,
                    "reason": "not in the agent's capabilities",
                },
            )
            raise AgentError(
                f"{agent.name} may not use {action.connector}.{action.operation}; refused"
            )
        if action.connector not in self._connectors:
            raise AgentError(f"the {action.connector} connector is not configured")
        key = f"{agent.name}.{action.name}"
        runs = await self._actions.runs(agent.name, action.name)
        gate = gate_decision(key, await self.policies.rule_for(key), action.risk, runs)
        if always_ask and gate.mode is Mode.AUTO:
            gate = GateDecision(Mode.APPROVE, f"a spoken command always asks ({key})")
        async with self._store.write() as tx:
            row = await self._create(tx, task, agent, proposal, gate)
            if gate.mode is Mode.APPROVE:
                await self._ask(tx, task, row, intent.conversation, gate)
            else:
                await self._tasks.set_checkpoint(tx, task.id, json.dumps({"action": row.id}))
        if gate.mode is Mode.DENY:
            raise Refusal(f"Not done: {gate.reason}. /policy {key} shows the rule")
        if gate.mode is Mode.APPROVE:
            self._on_change()
            return PARKED
        return await self._run(task, agent, intent, row)

    async def _create(
        self, tx: Transaction, task: TaskRow, agent: Agent, proposal: Propose, gate: GateDecision
    ) -> ActionRow:
        action = proposal.action
        number = await self._actions.count_for_task(tx, task.id) + 1
        row = await self._actions.create(
            tx,
            task_id=task.id,
            agent=agent.name,
            name=action.name,
            connector=action.connector,
            operation=action.operation,
            params=action.params,
            summary=action.summary,
            risk=action.risk.as_json(),
            compensation=None if action.compensation is None else action.compensation.as_json(),
            idempotency_key=f"{task.idempotency_key}#a{number}",
            fingerprint=action.fingerprint(agent.name),
            gate=gate.mode.value,
            state=_GATE_STATE[gate.mode],
            now=self._clock.now(),
            undo_of=proposal.undo_of,
            editable=action.editable,
        )
        await self._events.append(
            tx,
            "gate.decided",
            actor=ACTOR,
            subject=f"action:{row.id}",
            payload={
                "policy": f"{agent.name}.{action.name}",
                "decision": gate.mode.value,
                "reason": gate.reason,
                "task": task.id,
            },
        )
        return row

    async def resume(
        self, task: TaskRow, agent: Agent, intent: Intent, checkpoint: dict[str, Any]
    ) -> AgentResult | Parked:
        """Continue a task from its action (after an approval, a delay or a crash)."""
        row = await self._actions.get(int(checkpoint["action"]))
        if row is None:
            raise AgentError("the action this task was waiting on is gone")
        match row.state:
            case ActionState.PENDING_APPROVAL:
                return await self._after_approval(task, agent, intent, row, checkpoint)
            case ActionState.APPROVED:
                return await self._run(task, agent, intent, row)
            case ActionState.IN_FLIGHT:
                return await self._reconcile(task, agent, intent, row)
            case ActionState.SUCCEEDED:
                return await agent.on_action(intent, _report(row, "succeeded"))
            case ActionState.REJECTED:
                return await agent.on_action(intent, _report(row, "rejected"))
            case ActionState.DISCARDED | ActionState.FAILED:
                return await agent.on_action(intent, _report(row, "discarded"))
            case ActionState.UNCERTAIN:
                raise AgentError("this action is waiting for you to say whether it went through")
        raise AssertionError(row.state)

    async def _after_approval(
        self,
        task: TaskRow,
        agent: Agent,
        intent: Intent,
        row: ActionRow,
        checkpoint: dict[str, Any],
    ) -> AgentResult | Parked:
        approval = await self._desk.repo.get(int(checkpoint["approval"]))
        if approval is None or approval.state is ApprovalState.PENDING:
            raise AgentError("this task resumed before its approval was decided")
        if approval.state is ApprovalState.APPROVED:
            if fingerprint(agent.name, action_spec(row)) != approval.fingerprint:
                # The stored action is not what was approved: void and ask again.
                async with self._store.write() as tx:
                    await self._desk.void(tx, approval, "the action changed after approval")
                    await self._ask(tx, task, row, intent.conversation, None)
                self._on_change()
                return PARKED
            async with self._store.write() as tx:
                await self._mover.move(
                    tx, row.id, ActionState.APPROVED, expect=ActionState.PENDING_APPROVAL
                )
                await self._tasks.set_checkpoint(tx, task.id, json.dumps({"action": row.id}))
            return await self._run(task, agent, intent, await self._reread(row.id))
        reason = {
            ApprovalState.EXPIRED: "the approval expired",
            ApprovalState.VOIDED: "the approval was voided",
        }.get(approval.state, f"rejected by {approval.decided_by}")
        async with self._store.write() as tx:
            await self._mover.move(
                tx, row.id, ActionState.REJECTED, expect=ActionState.PENDING_APPROVAL, error=reason
            )
        report = _report(row, "rejected", by=approval.decider, reason=reason)
        return await agent.on_action(intent, report)

    async def _run(
        self, task: TaskRow, agent: Agent, intent: Intent, row: ActionRow
    ) -> AgentResult | Parked:
        now = self._clock.now()
        conversation = intent.conversation
        over = (await self._lifecycle.budget_use(agent.name)).exceeded()
        if over is not None:
            return await self.failures.over_budget(task, conversation, agent.name, over)
        endpoint = self.breakers.endpoint(row)
        breaker = self.breakers.get(row.connector, endpoint)
        if not breaker.allow(now):
            return await self.failures.delay(task, breaker.retry_at(now), "breaker_open", row)
        async with self._store.write() as tx:
            moved = await self._mover.move(
                tx,
                row.id,
                ActionState.IN_FLIGHT,
                expect=ActionState.APPROVED,
                attempt=True,
                event="action.started",
                payload={
                    "connector": row.connector,
                    "operation": row.operation,
                    "key": row.idempotency_key,
                    "attempt": row.attempts + 1,
                },
            )
            if not moved:
                raise AgentError("the action changed state under this task")
        connector = self._connectors[row.connector]
        try:
            async with asyncio.timeout(self._retry.call_timeout_s):
                result = await connector.execute(row.operation, row.params, row.idempotency_key)
        except TransientError as exc:
            return await self.failures.transient(task, conversation, row, str(exc), exc.retry_after)
        except TimeoutError:
            return await self.failures.transient(
                task, conversation, row, "the call timed out", None
            )
        except PermanentError as exc:
            # It answered: the service is up, the request is wrong.
            await self.breakers.success(row.connector, endpoint)
            return await self.failures.dead_letter(task, conversation, row, str(exc), "permanent")
        except asyncio.CancelledError:
            raise  # a stop: the action stays in flight and is reconciled at the next start
        except Exception as exc:  # a connector bug: we cannot know what reached the far side
            log.exception("connector %s raised an unexpected error", row.connector)
            why = f"{type(exc).__name__}: {exc}"
            return await self.failures.uncertain(task, conversation, row, why)
        await self.breakers.success(row.connector, endpoint)
        async with self._store.write() as tx:
            await self._mover.move(
                tx,
                row.id,
                ActionState.SUCCEEDED,
                expect=ActionState.IN_FLIGHT,
                result={"summary": result.summary, "detail": result.detail},
                event="action.succeeded",
                payload={
                    "connector": row.connector,
                    "summary": result.summary[:200],
                    "undo_of": row.undo_of,
                },
            )
            if row.undo_of is not None:
                original = await self._actions.get(row.undo_of, tx)
                if original is not None and original.gate == Mode.AUTO.value:
                    why = f"action {original.id} was undone"
                    await self.policies.demote(tx, original.policy_key, why)
        return await agent.on_action(intent, _report(await self._reread(row.id), "succeeded"))

    async def _reconcile(
        self, task: TaskRow, agent: Agent, intent: Intent, row: ActionRow
    ) -> AgentResult | Parked:
        """An action was in flight when soloops stopped: find out, never resend blindly."""
        connector = self._connectors.get(row.connector)
        known = Known.UNKNOWN
        lookup = None
        if connector is not None:
            try:
                async with asyncio.timeout(self._retry.call_timeout_s):
                    lookup = await connector.lookup(row.operation, row.params, row.idempotency_key)
                known = lookup.known
            except Exception:  # a failed lookup tells us nothing
                log.warning("lookup of %s failed", row.idempotency_key, exc_info=True)
        await self._events.record(
            "action.reconciled",
            actor=ACTOR,
            subject=f"action:{row.id}",
            payload={"known": known.value, "key": row.idempotency_key},
        )
        if known is Known.DONE:
            result = lookup.result if lookup else None
            done = {
                "summary": result.summary if result else "confirmed after a restart",
                "detail": result.detail if result else {},
            }
            async with self._store.write() as tx:
                await self._mover.move(
                    tx, row.id, ActionState.SUCCEEDED, expect=ActionState.IN_FLIGHT, result=done
                )
            fresh = await self._reread(row.id)
            return await agent.on_action(intent, _report(fresh, "succeeded"))
        if known is Known.NOT_DONE:
            async with self._store.write() as tx:
                await self._mover.move(
                    tx, row.id, ActionState.APPROVED, expect=ActionState.IN_FLIGHT
                )
            return await self._run(task, agent, intent, await self._reread(row.id))
        why = "the connector cannot tell whether it landed"
        return await self.failures.uncertain(task, intent.conversation, row, why)

    async def _ask(
        self,
        tx: Transaction,
        task: TaskRow,
        row: ActionRow,
        conversation: Conversation,
        gate: GateDecision | None,
    ) -> None:
        approval = await self._desk.request(
            tx,
            task_id=task.id,
            agent=row.agent,
            need=NeedsApproval(summary=row.summary, action=action_spec(row)),
            conversation=conversation,
        )
        await self._mover.move(
            tx,
            task.id,
            TaskState.WAITING_APPROVAL,
            expect=TaskState.RUNNING,
            checkpoint={"action": row.id, "approval": approval.id},
            event="task.waiting",
            payload={
                "action": row.id,
                "approval": approval.id,
                "reason": gate.reason if gate else "asked again",
            },
        )

    async def _reread(self, action_id: int) -> ActionRow:
        fresh = await self._actions.get(action_id)
        assert fresh is not None  # action rows are never deleted
        return fresh


def _report(
    row: ActionRow, outcome: str, *, by: str | None = None, reason: str | None = None
) -> ActionReport:
    return ActionReport(
        action_id=row.id,
        summary=row.summary,
        outcome=outcome,  # type: ignore[arg-type]  # one of the three literal outcomes
        result=row.result,
        by=by,
        reason=reason,
    )
