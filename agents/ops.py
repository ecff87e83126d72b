"""The ops agent: /help, /status, /events, approvals, hooks, policies, agents, undo."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from agents import control
from agents.actions import Action, Propose
from agents.base import Agent, Examples, NeedsApproval, Outcome, TaskContext
from agents.catalog import CommandInfo
from agents.errors import AgentError
from agents.intents import (
    AgentsIntent,
    ConfirmIntent,
    Conversation,
    EventsIntent,
    FailedIntent,
    HelpIntent,
    HookIntent,
    Intent,
    PauseIntent,
    PendingIntent,
    PolicyIntent,
    ResumeIntent,
    StatusIntent,
    UndoIntent,
)
from agents.lifecycle import AgentState
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.events import Event, EventLog
from memory.memories import MemoryRepo
from memory.outbox import DeliveryState, OutboxRepo
from memory.store import Store
from memory.tasks import TaskRepo, TaskState

if TYPE_CHECKING:
    from agents.coordinator import Coordinator


def render_help(catalog: Sequence[CommandInfo], topic: str | None) -> str:
    """The command list, or one command's usage."""
    if topic:
        name = topic.strip().lstrip("/").lower()
        by_name = {info.name: info for info in catalog}
        info = by_name.get(name)
        if info is None:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" Did you mean /{close[0]}?" if close else ""
            return f"No command /{name}.{hint} Send /help for the list."
        lines = [f"/{info.usage}", info.summary]
        if info.example:
            lines.append(f"Example: {info.example}")
        return "\n".join(lines)
    width = max(len(info.usage) for info in catalog) + 1
    lines = ["Commands:"]
    lines += [f"/{info.usage.ljust(width)} {info.summary}" for info in catalog]
    lines.append("Send /help <command> for details.")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """Everything /status reports, gathered before rendering."""

    tasks: dict[TaskState, int]
    deliveries: dict[DeliveryState, int]
    notes: int
    last_event: int
    pending_cards: int = 0
    breakers: dict[str, str] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)


def render_status(facts: StatusFacts, started_at: datetime, now: datetime) -> str:
    """The /status text."""
    uptime = now - started_at
    hours, rem = divmod(int(uptime.total_seconds()), 3600)
    shown = [f"{state.value} {count}" for state, count in facts.tasks.items() if count]
    deliveries = facts.deliveries
    lines = [
        f"soloops is up {hours}h{rem // 60:02d}m.",
        "Tasks: " + (", ".join(shown) if shown else "none yet"),
        f"Replies: {deliveries[DeliveryState.SENT]} sent,"
        f" {deliveries[DeliveryState.PENDING]} pending,"
        f" {deliveries[DeliveryState.FAILED]} failed",
        f"Notes: {facts.notes}. Events: {facts.last_event}.",
    ]
    if facts.pending_cards:
        lines.append(f"Waiting for you: {facts.pending_cards} card(s); /pending shows them.")
    if facts.breakers:
        lines.append(
            "Connectors: " + ", ".join(f"{name} {state}" for name, state in facts.breakers.items())
        )
    held = {name: state for name, state in facts.agents.items() if state != "running"}
    if held:
        lines.append("Agents not running: " + ", ".join(f"{n} ({s})" for n, s in held.items()))
    if facts.tasks[TaskState.FAILED] or facts.tasks[TaskState.DEAD]:
        lines.append("See failures: /failed, /events or soloops events --kind task.failed")
    if deliveries[DeliveryState.FAILED]:
        lines.append("Some replies could not be delivered: soloops events --kind reply.failed")
    return "\n".join(lines)


def render_event(event: Event) -> str:
    """One event as a compact line."""
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    if len(payload) > 120:
        payload = payload[:119] + "…"
    subject = f" {event.subject}" if event.subject else ""
    return f"#{event.seq} {event.ts:%H:%M:%S} {event.kind}{subject} {payload}"


class OpsAgent(Agent):
    """Answers questions about soloops itself and gives the operator its controls."""

    name: ClassVar[str] = "ops"
    kinds: ClassVar[frozenset[str]] = frozenset(
        {
            "help",
            "status",
            "events",
            "confirm",
            "pending",
            "hook",
            "policy",
            "agents",
            "pause",
            "resume",
            "undo",
            "failed",
        }
    )
    capabilities: ClassVar[frozenset[tuple[str, str]]] = frozenset({("webhook", "post")})
    examples: ClassVar[Mapping[str, Examples]] = {
        "help": Examples(
            "Show the commands",
            ("help", "what can you do?", "which commands are there?", "how do I use this?"),
        ),
        "status": Examples(
            "Show the status",
            (
                "how are you doing?",
                "how is soloops doing?",
                "status report",
                "is everything running?",
                "is everything ok?",
                "any failures?",
            ),
        ),
        "events": Examples(
            "Show recent events",
            ("show the latest events", "what happened recently?", "show me the log"),
        ),
    }

    def __init__(
        self,
        store: Store,
        events: EventLog,
        catalog: Sequence[CommandInfo],
        clock: Clock | None = None,
        hooks: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._events = events
        self._catalog = list(catalog)
        self._clock = clock or SystemClock()
        self._started_at = self._clock.now()
        self._hooks = tuple(sorted(hooks))
        self._coordinator: Coordinator | None = None

    def bind(self, coordinator: Coordinator) -> None:
        """Give the ops agent the coordinator it reports on and controls."""
        self._coordinator = coordinator

    @property
    def coordinator(self) -> Coordinator:
        if self._coordinator is None:
            raise AgentError("ops is not bound to a coordinator")
        return self._coordinator

    async def handle(self, intent: Intent, ctx: TaskContext) -> Outcome:
        actor = intent.conversation.actor
        match intent:
            case HelpIntent(topic=topic):
                return [Reply(text=render_help(self._catalog, topic))]
            case StatusIntent():
                return [
                    Reply(
                        text=render_status(await self._facts(), self._started_at, self._clock.now())
                    )
                ]
            case EventsIntent(limit=limit):
                events = await self._events.query(limit=limit)
                if not events:
                    return [Reply(text="No events yet.")]
                return [Reply(text="\n".join(render_event(event) for event in events))]
            case ConfirmIntent(text=text):
                return await self._confirm(text, intent.conversation, ctx)
            case PendingIntent():
                return await self._pending(intent.conversation)
            case HookIntent(name=name, text=text):
                return self._hook(name, text, actor)
            case PolicyIntent(words=words):
                return [await control.policies(self.coordinator, words, actor)]
            case AgentsIntent():
                return [await control.agents_table(self.coordinator)]
            case PauseIntent(agent=agent):
                return [
                    await control.set_agent_state(self.coordinator, agent, AgentState.PAUSED, actor)
                ]
            case ResumeIntent(agent=agent):
                return [
                    await control.set_agent_state(
                        self.coordinator, agent, AgentState.RUNNING, actor
                    )
                ]
            case UndoIntent(event=event):
                result = await control.undo(self.coordinator, event)
                return [result] if isinstance(result, Reply) else result
            case FailedIntent():
                return [await control.failed(self.coordinator, intent.conversation)]
        raise AssertionError(f"ops got an intent it does not handle: {intent.kind}")

    def _hook(self, name: str | None, text: str, actor: str) -> Outcome:
        if not self._hooks:
            return [
                Reply(
                    text=(
                        "No hooks are configured. Add one: a [hooks.<name>] table with url"
                        " and secret in your TOML file (SOLOOPS_CONFIG), or the same as JSON"
                        " in SOLOOPS_HOOKS. The README shows both."
                    )
                )
            ]
        listed = ", ".join(self._hooks)
        if name is None or name not in self._hooks:
            lead = "Hooks" if name is None else f"There is no hook {name!r}. Hooks"
            return [Reply(text=f"{lead}: {listed}. Usage: /hook <name> <text>")]
        if not text:
            raise AgentError(f"/hook {name} needs some text to send. Usage: /hook <name> <text>")
        return Propose(
            Action(
                name="hook",
                connector="webhook",
                operation="post",
                params={"hook": name, "payload": {"text": text, "from": actor}},
                summary=f"Post to the {name} hook: {text[:300]}",
            )
        )

    async def _facts(self) -> StatusFacts:
        coordinator = self._coordinator
        pending = len(await coordinator.approvals.repo.pending()) if coordinator else 0
        breakers = {}
        agents: dict[str, str] = {}
        if coordinator is not None:
            breakers = {k: v.value for k, v in coordinator.executor.breaker_states().items()}
            names = {agent.name for agent in coordinator.agents.values()}
            agents = {k: v.value for k, v in coordinator.lifecycle.snapshot(sorted(names)).items()}
        return StatusFacts(
            tasks=await TaskRepo(self._store).counts(),
            deliveries=await OutboxRepo(self._store).counts(),
            notes=await MemoryRepo(self._store).count("notes"),
            last_event=await self._events.last_seq(),
            pending_cards=pending,
            breakers=breakers,
            agents=agents,
        )

    async def _confirm(self, text: str, conversation: Conversation, ctx: TaskContext) -> Outcome:
        action = {"confirm": text}
        decision = ctx.decision
        if decision is None or not decision.covers(self.name, action):
            return NeedsApproval(summary=f"Confirm: {text}", action=action)
        await self._events.record(
            f"confirm.{decision.outcome}",
            actor=decision.by or "system",
            subject=f"approval:{decision.approval_id}",
            payload={"text": text[:200], "task": ctx.task_id},
        )
        if decision.outcome == "approved":
            return [Reply(text=f"Confirmed by {decision.by}: {text}")]
        why = {"rejected": f"rejected by {decision.by}", "expired": "the approval expired"}
        return [
            Reply(text=f"Not confirmed ({why.get(decision.outcome, decision.outcome)}): {text}")
        ]

    async def _pending(self, conversation: Conversation) -> Sequence[Reply]:
        desk = self.coordinator.approvals
        waiting = await desk.repo.pending()
        if not waiting:
            return [Reply(text="Nothing is waiting for your approval.")]
        async with self._store.write() as tx:
            for row in waiting:
                await desk.resend(tx, row, conversation)
        return [Reply(text=f"{len(waiting)} approval(s) waiting; their cards are above.")]
