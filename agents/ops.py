"""The ops agent: /help, /status, /events — how soloops itself is doing."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from agents.base import Agent, Examples, TaskContext
from agents.catalog import CommandInfo
from agents.intents import EventsIntent, HelpIntent, Intent, StatusIntent
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.events import Event, EventLog
from memory.memories import MemoryRepo
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
    kinds: ClassVar[frozenset[str]] = frozenset({"help", "status", "events"})
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
    ) -> None:
        self._store = store
        self._events = events
        self._catalog = list(catalog)
        self._clock = clock or SystemClock()
        self._started_at = self._clock.now()

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        match intent:
            case HelpIntent(topic=topic):
                return [Reply(text=render_help(self._catalog, topic))]
            case StatusIntent():
                text = render_status(
                    await TaskRepo(self._store).counts(),
                    await OutboxRepo(self._store).counts(),
                    await MemoryRepo(self._store).count("notes"),
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
        raise AssertionError(f"ops got an intent it does not handle: {intent.kind}")
