"""What the ops feature says: /help, /status and /events, as plain functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agents.feature import CommandSpec
from memory.events import Event
from memory.outbox import DeliveryState
from memory.tasks import TaskState

HELP_COLUMN = 32


def render_help(catalog: Sequence[CommandSpec], topic: str | None) -> str:
    """The command list, or one command's usage."""
    if topic:
        name = topic.strip().lstrip("/").lower()
        by_name = {info.name: info for info in catalog}
        info = by_name.get(name)
        if info is None:
            import difflib  # only an unknown topic needs it (~1.5 ms to import at start)

            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" Did you mean /{close[0]}?" if close else ""
            return f"No command /{name}.{hint} Send /help for the list."
        lines = [f"/{info.usage}", info.summary]
        if info.example:
            lines.append(f"Example: {info.example}")
        return "\n".join(lines)
    # Align the summaries after the usual usages; a few long usages just run longer,
    # instead of pushing every line out to the longest one.
    width = min(max(len(info.usage) for info in catalog), HELP_COLUMN) + 1
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
    memory: str = ""  # the memory index's state in words, when it is not simply ready


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
    if facts.memory:
        lines.append(facts.memory[0].upper() + facts.memory[1:] + ".")
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
