"""The ops agent: /help, /status, /events — how soloops itself is doing."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from agents.approvals import ApprovalDesk
from agents.base import Agent, NeedsApproval, Outcome, TaskContext
from agents.catalog import CommandInfo
from agents.intents import (
    ConfirmIntent,
    Conversation,
    EventsIntent,
    HelpIntent,
    Intent,
    PendingIntent,
    StatusIntent,
)
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.events import Event, EventLog
from memory.notes import NotesRepo
from memory.outbox import DeliveryState, OutboxRepo
from memory.store import Store
from memory.tasks import TaskRepo, TaskState


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


def render_status(
    tasks: dict[TaskState, int],
    deliveries: dict[DeliveryState, int],
    notes: int,
    last_event: int,
    started_at: datetime,
    now: datetime,
) -> str:
    """The /status text."""
    uptime = now - started_at
    hours, rem = divmod(int(uptime.total_seconds()), 3600)
    shown = [f"{state.value} {count}" for state, count in tasks.items() if count]
    lines = [
        f"soloops is up {hours}h{rem // 60:02d}m.",
        "Tasks: " + (", ".join(shown) if shown else "none yet"),
        f"Replies: {deliveries[DeliveryState.SENT]} sent,"
        f" {deliveries[DeliveryState.PENDING]} pending,"
        f" {deliveries[DeliveryState.FAILED]} failed",
        f"Notes: {notes}. Events: {last_event}.",
    ]
    if tasks[TaskState.FAILED] or tasks[TaskState.DEAD]:
        lines.append("See failures: /events or soloops events --kind task.failed")
    return "\n".join(lines)


def render_event(event: Event) -> str:
    """One event as a compact line."""
    payload = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
    if len(payload) > 120:
        payload = payload[:119] + "…"
    subject = f" {event.subject}" if event.subject else ""
    return f"#{event.seq} {event.ts:%H:%M:%S} {event.kind}{subject} {payload}"


class OpsAgent(Agent):
    """Answers questions about soloops itself."""

    name: ClassVar[str] = "ops"
    kinds: ClassVar[frozenset[str]] = frozenset({"help", "status", "events", "confirm", "pending"})

    def __init__(
        self,
        store: Store,
        events: EventLog,
        catalog: Sequence[CommandInfo],
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._catalog = list(catalog)
        self._clock = clock or SystemClock()
        self._started_at = self._clock.now()
        self._desk = ApprovalDesk(store, events, self._clock)

    async def handle(self, intent: Intent, ctx: TaskContext) -> Outcome:
        match intent:
            case HelpIntent(topic=topic):
                return [Reply(text=render_help(self._catalog, topic))]
            case StatusIntent():
                text = render_status(
                    await TaskRepo(self._store).counts(),
                    await OutboxRepo(self._store).counts(),
                    await NotesRepo(self._store).count(),
                    await self._events.last_seq(),
                    self._started_at,
                    self._clock.now(),
                )
                return [Reply(text=text)]
            case EventsIntent(limit=limit):
                events = await self._events.query(limit=limit)
                if not events:
                    return [Reply(text="No events yet.")]
                return [Reply(text="\n".join(render_event(event) for event in events))]
            case ConfirmIntent(text=text):
                return await self._confirm(text, intent.conversation, ctx)
            case PendingIntent():
                return await self._pending(intent.conversation)
        raise AssertionError(f"ops got an intent it does not handle: {intent.kind}")

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
        waiting = await self._desk.repo.pending()
        if not waiting:
            return [Reply(text="Nothing is waiting for your approval.")]
        async with self._store.write() as tx:
            for row in waiting:
                await self._desk.resend(tx, row, conversation)
        return [Reply(text=f"{len(waiting)} approval(s) waiting; their cards are above.")]
