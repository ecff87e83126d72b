"""The executor: takes a proposed action from the gate to the outside world, once.

    Propose ─> capability check ─> policy gate ──deny──> refused
                                     │ approve ─> card; the task waits (checkpoint)
                                     │ auto
                                     v
           action row committed (approved) ─> budget ─> breaker ─> in_flight committed
               ─> connector.execute(key) ─> succeeded committed ─> agent.on_action
                                          ─> transient: retry later (time stored in SQLite)
                                          ─> permanent / exhausted: dead letter + card

The task's checkpoint names its action, so a resumed task (after an approval, a retry
delay or a crash) continues from the action row and never re-runs the agent's steps
before the gate. An action found ``in_flight`` after a crash is reconciled: the
connector is asked about the idempotency key; if it cannot tell, the operator gets a
Mark done / Retry card. Never a blind resend.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agents.actions import Action, Propose
from agents.approvals import ApprovalDesk
from agents.base import ActionReport, Agent, NeedsApproval, Outcome
from agents.breaker import BreakerState, CircuitBreaker
from agents.cards import register_card_handlers
from agents.errors import AgentError
from agents.fingerprint import fingerprint
from agents.intents import Conversation, Intent
from agents.lifecycle import AgentState, Lifecycle
from agents.policy import (
    POLICIES_FILE,
    GateDecision,
    Mode,
    Rule,
    decide,
    effective_rule,
    load_rules,
)
from agents.replies import error
from agents.runbook import hint
from agents.states import check_transition
from connectors.base import Connector, Known, PermanentError, TransientError
from memory.actions import ActionRepo, ActionRow, ActionState
from memory.approvals import ApprovalState
from memory.clock import Clock
from memory.control import PolicyOverrideRepo
from memory.events import EventLog
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskRow, TaskState

log = logging.getLogger(__name__)
ACTOR = "coordinator"
CARD_LABELS = {"dead_letter": ("Retry", "Discard"), "reconcile": ("Mark done", "Retry")}


class Parked:
    """The task was moved out of ``running`` (waiting, delayed or dead); nothing to reply."""


PARKED = Parked()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failing actions are retried."""

    max_attempts: int = 6
    base_s: float = 2.0
    max_s: float = 600.0
    call_timeout_s: float = 30.0

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Exponential backoff with full jitter; the service's own wait wins if longer."""
        ceiling = min(self.max_s, self.base_s * 2.0 ** max(0, attempt - 1))
        jittered = ceiling / 2 + (rng or random).random() * ceiling / 2
        return max(jittered, retry_after or 0.0)


def action_spec(row: ActionRow) -> dict[str, Any]:
    """The approval-bound content of a stored action (what its fingerprint covers)."""
    return {
        "name": row.name,
        "connector": row.connector,
        "operation": row.operation,
        "params": row.params,
        "risk": row.risk,
    }


class Executor:
    """Runs actions for the coordinator."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        desk: ApprovalDesk,
        lifecycle: Lifecycle,
        connectors: Mapping[str, Connector],
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        breaker_threshold: int = 5,
        breaker_cooldown: timedelta = timedelta(seconds=30),
        policies_file: Path | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._events = events
        self._desk = desk
        self._lifecycle = lifecycle
        self._connectors = dict(connectors)
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._actions = ActionRepo(store)
        self._tasks = TaskRepo(store)
        self._overrides = PolicyOverrideRepo(store)
        self._policies_file = policies_file or POLICIES_FILE
        self._base_rules = load_rules(self._policies_file)
        self._on_change = on_change
        self.breakers = {
            name: CircuitBreaker(threshold=breaker_threshold, cooldown=breaker_cooldown)
            for name in self._connectors
        }
        register_card_handlers(desk, store, events, lifecycle, clock, on_change)

    async def aclose(self) -> None:
        """Close every connector."""
        for connector in self._connectors.values():
            await connector.aclose()

    # ---- policies ----------------------------------------------------------------

    async def rules(self) -> tuple[dict[str, Rule], dict[str, Rule]]:
        """(rules from the policies file, rules changed in chat)."""
        overrides = {k: Rule.from_json(v) for k, v in (await self._overrides.all()).items()}
        return self._base_rules, overrides

    async def rule_for(self, key: str) -> Rule:
        base, overrides = await self.rules()
        return effective_rule(key, base, overrides)

    async def set_rule(self, key: str, rule: Rule | None, actor: str) -> Rule:
        """Change a rule from chat (None: back to the file's). Returns the rule in force."""
        async with self._store.write() as tx:
            if rule is None:
                await self._overrides.delete(tx, key)
            else:
                await self._overrides.put(tx, key, rule.as_json(), actor, self._clock.now())
            await self._events.append(
                tx,
                "policy.changed",
                actor=actor,
                subject=f"policy:{key}",
                payload={"rule": None if rule is None else rule.as_json()},
            )
        return await self.rule_for(key)

    async def _demote(self, tx: Transaction, key: str, why: str) -> None:
        """Progressive autonomy: an auto action that failed or was undone needs approval."""
        rule = await self.rule_for(key)
        if rule.mode is not Mode.AUTO or rule.demoted:
            return
        await self._overrides.put(
            tx, key, replace(rule, demoted=True).as_json(), "supervisor", self._clock.now()
        )
        await self._events.append(
            tx, "policy.demoted", actor="supervisor", subject=f"policy:{key}", payload={"why": why}
        )

    # ---- the path of one action ---------------------------------------------------

    async def start(
        self, task: TaskRow, agent: Agent, intent: Intent, proposal: Propose
    ) -> Outcome | Parked:
        """Gate a freshly proposed action and carry it out (or park the task)."""
        action = proposal.action
        if (action.connector, action.operation) not in agent.capabilities:
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
        gate = decide(
            key,
            await self.rule_for(key),
            action.risk,
            await self._actions.runs(agent.name, action.name),
        )
        async with self._store.write() as tx:
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
                state={
                    Mode.AUTO: ActionState.APPROVED,
                    Mode.APPROVE: ActionState.PENDING_APPROVAL,
                    Mode.DENY: ActionState.REJECTED,
                }[gate.mode],
                now=self._clock.now(),
                undo_of=proposal.undo_of,
            )
            await self._events.append(
                tx,
                "gate.decided",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={
                    "policy": key,
                    "decision": gate.mode.value,
                    "reason": gate.reason,
                    "task": task.id,
                },
            )
            if gate.mode is Mode.APPROVE:
                await self._ask(tx, task, row, intent.conversation, gate)
            else:
                await self._checkpoint(tx, task, {"action": row.id})
        if gate.mode is Mode.DENY:
            raise AgentError(f"Not done: {gate.reason}. /policy {key} shows the rule")
        if gate.mode is Mode.APPROVE:
            self._on_change()
            return PARKED
        return await self._run(task, agent, intent, row)

    async def resume(
        self, task: TaskRow, agent: Agent, intent: Intent, checkpoint: dict[str, Any]
    ) -> Outcome | Parked:
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
                return await agent.on_action(intent, self._report(row, "succeeded"))
            case ActionState.REJECTED:
                return await agent.on_action(intent, self._report(row, "rejected"))
            case ActionState.DISCARDED | ActionState.FAILED:
                return await agent.on_action(intent, self._report(row, "discarded"))
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
    ) -> Outcome | Parked:
        approval = await self._desk.repo.get(int(checkpoint["approval"]))
        if approval is None or approval.state is ApprovalState.PENDING:
            raise AgentError("this task resumed before its approval was decided")
        now = self._clock.now()
        if approval.state is ApprovalState.APPROVED:
            if fingerprint(agent.name, action_spec(row)) != approval.fingerprint:
                # The stored action is not what was approved: void and ask again.
                async with self._store.write() as tx:
                    await self._desk.void(tx, approval, "the action changed after approval")
                    await self._ask(tx, task, row, intent.conversation, None)
                self._on_change()
                return PARKED
            async with self._store.write() as tx:
                await self._actions.update(
                    tx,
                    row.id,
                    state=ActionState.APPROVED,
                    now=now,
                    expect=ActionState.PENDING_APPROVAL,
                )
                await self._checkpoint(tx, task, {"action": row.id})
            return await self._run(task, agent, intent, await self._reread(row.id))
        reason = {
            ApprovalState.EXPIRED: "the approval expired",
            ApprovalState.VOIDED: "the approval was voided",
        }.get(approval.state, f"rejected by {approval.decided_by}")
        async with self._store.write() as tx:
            await self._actions.update(
                tx,
                row.id,
                state=ActionState.REJECTED,
                now=now,
                error=reason,
                expect=ActionState.PENDING_APPROVAL,
            )
        report = self._report(row, "rejected", by=approval.decided_by, reason=reason)
        return await agent.on_action(intent, report)

    async def _run(
        self, task: TaskRow, agent: Agent, intent: Intent, row: ActionRow
    ) -> Outcome | Parked:
        now = self._clock.now()
        over = (await self._lifecycle.budget_use(agent.name)).exceeded()
        if over is not None:
            return await self._pause_for_budget(task, agent, intent.conversation, row, over)
        breaker = self.breakers[row.connector]
        if not breaker.allow(now):
            await self._delay(task, breaker.retry_at(now), "breaker_open", row)
            return PARKED
        async with self._store.write() as tx:
            moved = await self._actions.update(
                tx,
                row.id,
                state=ActionState.IN_FLIGHT,
                now=now,
                attempt=True,
                expect=ActionState.APPROVED,
            )
            if not moved:
                raise AgentError("the action changed state under this task")
            await self._events.append(
                tx,
                "action.started",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={
                    "connector": row.connector,
                    "operation": row.operation,
                    "key": row.idempotency_key,
                    "attempt": row.attempts + 1,
                },
            )
        connector = self._connectors[row.connector]
        try:
            async with asyncio.timeout(self._retry.call_timeout_s):
                result = await connector.execute(row.operation, row.params, row.idempotency_key)
        except TransientError as exc:
            return await self._transient(task, agent, intent, row, str(exc), exc.retry_after)
        except TimeoutError:
            return await self._transient(task, agent, intent, row, "the call timed out", None)
        except PermanentError as exc:
            breaker.success()  # it answered: the service is up, the request is wrong
            return await self._dead_letter(
                task, agent, intent.conversation, row, str(exc), "permanent"
            )
        except asyncio.CancelledError:
            raise  # a stop: the action stays in flight and is reconciled at the next start
        except Exception as exc:  # a connector bug: we cannot know what reached the far side
            log.exception("connector %s raised an unexpected error", row.connector)
            return await self._uncertain(
                task, agent, intent.conversation, row, f"{type(exc).__name__}: {exc}"
            )
        breaker.success()
        done = {"summary": result.summary, "detail": result.detail}
        async with self._store.write() as tx:
            await self._actions.update(
                tx,
                row.id,
                state=ActionState.SUCCEEDED,
                now=self._clock.now(),
                result=done,
                expect=ActionState.IN_FLIGHT,
            )
            await self._events.append(
                tx,
                "action.succeeded",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={
                    "connector": row.connector,
                    "summary": result.summary[:200],
                    "undo_of": row.undo_of,
                },
            )
            if row.undo_of is not None:
                original = await self._actions.get(row.undo_of, tx)
                if original is not None and original.gate == Mode.AUTO.value:
                    await self._demote(tx, original.policy_key, f"action {original.id} was undone")
        return await agent.on_action(intent, self._report(await self._reread(row.id), "succeeded"))

    async def _transient(
        self,
        task: TaskRow,
        agent: Agent,
        intent: Intent,
        row: ActionRow,
        reason: str,
        retry_after: float | None,
    ) -> Outcome | Parked:
        now = self._clock.now()
        breaker = self.breakers[row.connector]
        was = breaker.state(now)
        if breaker.failure(now):
            await self._events.record(
                "breaker.opened",
                actor=ACTOR,
                subject=f"connector:{row.connector}",
                payload={"failures": breaker.failures, "after": reason[:200]},
            )
        attempt = row.attempts + 1
        if attempt >= self._retry.max_attempts:
            return await self._dead_letter(
                task,
                agent,
                intent.conversation,
                row,
                f"{reason} (after {attempt} attempts)",
                "exhausted",
            )
        wait = self._retry.delay(attempt, retry_after)
        if was is BreakerState.HALF_OPEN or breaker.state(now) is BreakerState.OPEN:
            wait = max(wait, (breaker.retry_at(now) - now).total_seconds())
        async with self._store.write() as tx:
            await self._actions.update(
                tx,
                row.id,
                state=ActionState.APPROVED,
                now=now,
                error=reason[:500],
                expect=ActionState.IN_FLIGHT,
            )
            await self._events.append(
                tx,
                "action.retry",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={"error": reason[:300], "attempt": attempt, "wait_s": round(wait, 3)},
            )
            await self._move(
                tx, task, TaskState.QUEUED, next_attempt_at=now + timedelta(seconds=wait)
            )
        return PARKED

    async def _delay(self, task: TaskRow, until: datetime, why: str, row: ActionRow) -> None:
        async with self._store.write() as tx:
            await self._events.append(
                tx,
                "action.delayed",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={"why": why, "until": until.isoformat()},
            )
            await self._move(tx, task, TaskState.QUEUED, next_attempt_at=until)

    async def _dead_letter(
        self,
        task: TaskRow,
        agent: Agent,
        conversation: Conversation,
        row: ActionRow,
        reason: str,
        kind: str,
    ) -> Parked:
        async with self._store.write() as tx:
            await self._actions.update(
                tx,
                row.id,
                state=ActionState.FAILED,
                now=self._clock.now(),
                error=reason[:500],
            )
            await self._move(tx, task, TaskState.DEAD, error=reason[:300])
            await self._events.append(
                tx,
                "task.dead",
                actor=ACTOR,
                subject=f"task:{task.id}",
                payload={"action": row.id, "error": reason[:300], "kind": kind},
            )
            if row.gate == Mode.AUTO.value:
                await self._demote(tx, row.policy_key, f"action {row.id} failed")
            summary = f"{row.summary}\nReason: {reason[:300]}\nHint: {hint(row.connector, kind)}"
            await self._card(tx, task, agent, conversation, row, summary, "dead_letter")
        await self._supervise(agent, conversation, task)
        self._on_change()
        return PARKED

    async def _uncertain(
        self, task: TaskRow, agent: Agent, conversation: Conversation, row: ActionRow, reason: str
    ) -> Parked:
        async with self._store.write() as tx:
            await self._actions.update(
                tx, row.id, state=ActionState.UNCERTAIN, now=self._clock.now(), error=reason[:500]
            )
            await self._move(tx, task, TaskState.WAITING_APPROVAL)
            await self._events.append(
                tx,
                "action.uncertain",
                actor=ACTOR,
                subject=f"action:{row.id}",
                payload={"error": reason[:300], "key": row.idempotency_key},
            )
            summary = (
                f"{row.summary}\nsoloops stopped while this was being sent ({reason[:200]})."
                f"\nCheck the other side for key {row.idempotency_key}."
            )
            await self._card(tx, task, agent, conversation, row, summary, "reconcile")
        self._on_change()
        return PARKED

    async def _reconcile(
        self, task: TaskRow, agent: Agent, intent: Intent, row: ActionRow
    ) -> Outcome | Parked:
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
            fresh = await self._move_action(
                row, ActionState.SUCCEEDED, expect=ActionState.IN_FLIGHT, result=done
            )
            return await agent.on_action(intent, self._report(fresh, "succeeded"))
        if known is Known.NOT_DONE:
            fresh = await self._move_action(row, ActionState.APPROVED, expect=ActionState.IN_FLIGHT)
            return await self._run(task, agent, intent, fresh)
        return await self._uncertain(
            task, agent, intent.conversation, row, "the connector cannot tell whether it landed"
        )

    async def _pause_for_budget(
        self, task: TaskRow, agent: Agent, conversation: Conversation, row: ActionRow, over: str
    ) -> Parked:
        async with self._store.write() as tx:
            await self._move(tx, task, TaskState.QUEUED)
            changed = await self._lifecycle.set_state(
                tx, agent.name, AgentState.PAUSED, f"budget: {over}", "budget"
            )
            if changed:
                await self._desk.request(
                    tx,
                    task_id=task.id,
                    agent=agent.name,
                    need=NeedsApproval(
                        summary=(
                            f"{agent.name} reached its daily budget ({over}); its work is held."
                        ),
                        action={"budget": agent.name, "day": self._clock.now().date().isoformat()},
                    ),
                    conversation=conversation,
                    purpose="budget",
                    labels=("Extend today", "Keep paused"),
                )
        self._on_change()
        return PARKED

    async def _supervise(self, agent: Agent, conversation: Conversation, task: TaskRow) -> None:
        """Mark an agent degraded when its newest tasks all failed; tell the operator."""
        if not await self._lifecycle.failing_streak(agent.name):
            return
        async with self._store.write() as tx:
            changed = await self._lifecycle.set_state(
                tx, agent.name, AgentState.DEGRADED, "repeated failures", "supervisor"
            )
            if changed:
                await self._desk.notify(
                    tx,
                    conversation,
                    error(
                        f"The {agent.name} agent failed several times in a row and is now"
                        f" degraded: its queued work is held. /failed shows the failures;"
                        f" /resume {agent.name} when the cause is fixed."
                    ),
                )

    # ---- helpers ----------------------------------------------------------------

    async def _card(
        self,
        tx: Transaction,
        task: TaskRow,
        agent: Agent,
        conversation: Conversation,
        row: ActionRow,
        summary: str,
        purpose: str,
    ) -> None:
        """A dead-letter or reconcile card about ``row``; it waits a week for you."""
        await self._desk.request(
            tx,
            task_id=task.id,
            agent=agent.name,
            need=NeedsApproval(summary=summary, action={purpose: row.id}, ttl=timedelta(days=7)),
            conversation=conversation,
            purpose=purpose,
            labels=CARD_LABELS[purpose],
        )

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
        if row.state is not ActionState.PENDING_APPROVAL:
            await self._actions.update(
                tx, row.id, state=ActionState.PENDING_APPROVAL, now=self._clock.now()
            )
        await self._move(
            tx,
            task,
            TaskState.WAITING_APPROVAL,
            checkpoint={"action": row.id, "approval": approval.id},
        )
        await self._events.append(
            tx,
            "task.waiting",
            actor=ACTOR,
            subject=f"task:{task.id}",
            payload={
                "action": row.id,
                "approval": approval.id,
                "reason": gate.reason if gate else "asked again",
            },
        )

    async def _move_action(
        self,
        row: ActionRow,
        state: ActionState,
        *,
        expect: ActionState,
        result: dict[str, Any] | None = None,
    ) -> ActionRow:
        """Move an action in a transaction of its own; return it as stored."""
        async with self._store.write() as tx:
            await self._actions.update(
                tx, row.id, state=state, now=self._clock.now(), expect=expect, result=result
            )
        return await self._reread(row.id)

    async def _reread(self, action_id: int) -> ActionRow:
        fresh = await self._actions.get(action_id)
        assert fresh is not None  # action rows are never deleted
        return fresh

    async def _checkpoint(self, tx: Transaction, task: TaskRow, checkpoint: dict[str, Any]) -> None:
        await self._tasks.set_checkpoint(tx, task.id, json.dumps(checkpoint))

    async def _move(
        self,
        tx: Transaction,
        task: TaskRow,
        state: TaskState,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        check_transition(TaskState.RUNNING, state)
        await self._tasks.update(
            tx,
            task.id,
            state=state,
            now=self._clock.now(),
            expect=TaskState.RUNNING,
            error=error,
            next_attempt_at=next_attempt_at,
            checkpoint=None if checkpoint is None else json.dumps(checkpoint),
        )

    def _report(
        self, row: ActionRow, outcome: str, *, by: str | None = None, reason: str | None = None
    ) -> ActionReport:
        return ActionReport(
            action_id=row.id,
            summary=row.summary,
            outcome=outcome,  # type: ignore[arg-type]
            result=row.result,
            by=by,
            reason=reason,
        )

    def breaker_states(self) -> dict[str, BreakerState]:
        now = self._clock.now()
        return {name: breaker.state(now) for name, breaker in self.breakers.items()}


def compensation_of(row: ActionRow) -> Action | None:
    """The stored compensation of an action, as an Action to propose."""
    return None if row.compensation is None else Action.from_json(row.compensation)
