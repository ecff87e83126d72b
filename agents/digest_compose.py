"""The daily digest and ``/today``, composed from plain facts (no I/O).

The facts are gathered in one read (``memory/reports.py``); each feature adds its due
items as a :class:`Section`. :func:`compose_digest` turns them into one message:

    title (local date)
    Failures (last 24 h)    one line per cause: count, last time, recovered, runbook
    Dead letters            with a reference to their Retry / Discard card
    Pending approvals       with a reference to their card
    Deliveries that failed
    <feature sections>      reminders, follow-ups, unpaid invoices...
    Scheduled runs          late or skipped
    Activity (last 24 h)    per agent
    Budget today            per agent that used any
    Event chain             head sequence number and hash

Sections without content are left out; with nothing that needs the operator the
message says "All clear". Cards come back as :class:`CardRef` data, never as buttons:
the caller shows the real cards again. :func:`compose_today` is the short "what needs
my attention now" answer. The fact records are defined in :mod:`memory.digest_facts`
(the gatherer builds them there) and re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from memory.digest_facts import (
    AgentActivity,
    BudgetUse,
    CardRef,
    DayCount,
    DeadLetter,
    DigestFacts,
    FailedDelivery,
    Failure,
    PendingApproval,
    ScheduledRun,
    Section,
)

__all__ = [
    "AgentActivity",
    "BudgetUse",
    "CardRef",
    "DayCount",
    "DeadLetter",
    "Digest",
    "DigestFacts",
    "FailedDelivery",
    "Failure",
    "PendingApproval",
    "ScheduledRun",
    "Section",
    "compose_digest",
    "compose_today",
]

DIGEST_SECTION_LIMIT = 10
TODAY_SECTION_LIMIT = 5
ALL_CLEAR = "All clear: nothing failed and nothing waits for you."
NOTHING_NOW = "Nothing needs you right now."


@dataclass(frozen=True, slots=True)
class Digest:
    """A composed message: its text and the cards to show again with it."""

    title: str
    text: str
    cards: tuple[CardRef, ...] = ()
    all_clear: bool = False
    sections: tuple[str, ...] = field(default=())  # titles of the sections shown, in order


class _Clock:
    """Renders aware times in the operator's zone, relative to ``now``."""

    def __init__(self, now: datetime, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.now = now.astimezone(self.zone)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def at(self, moment: datetime) -> str:
        """``07:42`` today, ``yesterday 07:42``, ``tomorrow 07:42``, else ``Mon 23 Nov 07:42``."""
        local = self.local(moment)
        days = (local.date() - self.now.date()).days
        hhmm = local.strftime("%H:%M")
        if days == 0:
            return hhmm
        if days == -1:
            return f"yesterday {hhmm}"
        if days == 1:
            return f"tomorrow {hhmm}"
        return f"{local.strftime('%a %d %b')} {hhmm}"


def age(span: timedelta) -> str:
    """A short duration: ``45 min``, ``3 h``, ``2 d``."""
    minutes = max(0, int(span.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def _capped(lines: Sequence[str], limit: int, more: str) -> list[str]:
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"… and {len(lines) - limit} more ({more})"]


def _short(text: str, width: int = 90) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def failure_lines(
    failures: Iterable[Failure], clock: _Clock, *, open_only: bool = False
) -> list[str]:
    """One line per cause, the most frequent first: count, cause, last time, recovery, runbook."""
    groups: dict[str, list[Failure]] = {}
    for failure in failures:
        groups.setdefault(failure.group, []).append(failure)
    ranked = sorted(
        groups.values(), key=lambda group: (-len(group), -max(f.at for f in group).timestamp())
    )
    lines = []
    for group in ranked:
        latest = max(group, key=lambda f: f.at)
        # The newest failure decides: if what failed worked again after it, the cause is over.
        if open_only and latest.recovered_at is not None:
            continue
        text = f"• {len(group)}x {_short(latest.cause, 70)} (last {clock.at(latest.at)})"
        if latest.recovered_at is not None:
            text += f", recovered at {clock.at(latest.recovered_at)}"
        if latest.runbook:
            text += f" → /runbook {latest.runbook}"
        lines.append(text)
    return lines


def _dead_letter_lines(facts: DigestFacts, clock: _Clock) -> list[str]:
    lines = []
    for dead in facts.dead_letters:
        text = f"• task {dead.task_id}: {_short(dead.summary, 60)} ({_short(dead.error, 60)})"
        if dead.card is not None:
            text += f", card {dead.card.code}"
        if dead.runbook:
            text += f" → /runbook {dead.runbook}"
        lines.append(text)
    return lines


def _approval_lines(facts: DigestFacts, clock: _Clock) -> list[str]:
    return [
        f"• {p.card.code} {p.agent}: {_short(p.summary, 70)},"
        f" waiting {age(facts.now - p.created_at)}, expires {clock.at(p.expires_at)}"
        for p in facts.pending_approvals
    ]


def _delivery_lines(facts: DigestFacts, clock: _Clock) -> list[str]:
    return [
        f"• {d.platform} {d.chat_id} at {clock.at(d.at)}: {_short(d.error, 70)}"
        for d in facts.failed_deliveries
    ]


def _scheduled_lines(facts: DigestFacts, clock: _Clock) -> list[str]:
    lines = []
    for run in sorted(facts.scheduled, key=lambda r: r.scheduled_for):
        due = clock.at(run.scheduled_for)
        if run.outcome == "late":
            text = f"• {run.job}: ran late at {clock.at(run.at)} (due {due})"
        else:
            text = f"• {run.job}: skipped (due {due})"
        if run.note:
            text += f": {_short(run.note, 60)}"
        lines.append(text)
    return lines


def _activity_lines(facts: DigestFacts) -> list[str]:
    return [
        f"• {a.agent}: {a.succeeded} done, {a.failed} failed, {a.actions} actions"
        for a in sorted(facts.activity, key=lambda a: a.agent)
        if a.succeeded or a.failed or a.actions
    ]


def _budget_lines(facts: DigestFacts) -> list[str]:
    lines = []
    for use in sorted(facts.budgets, key=lambda u: u.agent):
        if not (use.actions or use.spend):
            continue
        text = (
            f"• {use.agent}: {use.actions}/{use.actions_limit} actions,"
            f" {use.spend:.2f}/{use.spend_limit:.2f} spend"
        )
        if use.exceeded:
            text += " (over: paused) → /runbook budget-exceeded"
        lines.append(text)
    return lines


def _cards(facts: DigestFacts) -> tuple[CardRef, ...]:
    dead = [d.card for d in facts.dead_letters if d.card is not None]
    return (*dead, *(p.card for p in facts.pending_approvals))


def compose_digest(facts: DigestFacts) -> Digest:
    """The daily digest of ``facts``: sections in a fixed order, empty ones left out."""
    clock = _Clock(facts.now, facts.timezone)
    title = f"Daily digest, {clock.now.strftime('%a %d %b %Y')} ({facts.timezone})"
    attention: list[tuple[str, list[str]]] = [
        (
            "Failures (last 24 h)",
            _capped(failure_lines(facts.failures, clock), DIGEST_SECTION_LIMIT, "soloops events"),
        ),
        (
            f"Dead letters ({len(facts.dead_letters)}): Retry or Discard",
            _capped(_dead_letter_lines(facts, clock), DIGEST_SECTION_LIMIT, "/failed"),
        ),
        (
            f"Waiting for you ({len(facts.pending_approvals)})",
            _capped(_approval_lines(facts, clock), DIGEST_SECTION_LIMIT, "/pending"),
        ),
        (
            "Deliveries that failed",
            _capped(_delivery_lines(facts, clock), DIGEST_SECTION_LIMIT, "soloops events"),
        ),
        *(
            (s.title, _capped(list(s.lines), DIGEST_SECTION_LIMIT, "ask for the full list"))
            for s in facts.due
        ),
        ("Scheduled runs not on time", _scheduled_lines(facts, clock)),
    ]
    info: list[tuple[str, list[str]]] = [
        ("Activity (last 24 h)", _activity_lines(facts)),
        ("Budget today", _budget_lines(facts)),
    ]
    shown = [(name, lines) for name, lines in attention if lines]
    all_clear = not shown
    parts = [title]
    if all_clear:
        parts.append(ALL_CLEAR)
    shown += [(name, lines) for name, lines in info if lines]
    parts += ["\n".join([name, *lines]) for name, lines in shown]
    if facts.chain_head:
        parts.append(f"Event log: {facts.chain_length} events, head {facts.chain_head[:12]}")
    return Digest(
        title=title,
        text="\n\n".join(parts),
        cards=_cards(facts),
        all_clear=all_clear,
        sections=tuple(name for name, _ in shown),
    )


def compose_today(facts: DigestFacts) -> Digest:
    """``/today``: only what needs the operator now (approvals, due items, open failures)."""
    clock = _Clock(facts.now, facts.timezone)
    title = f"Needs you now ({clock.now.strftime('%a %d %b, %H:%M')})"
    decisions = _dead_letter_lines(facts, clock) + _approval_lines(facts, clock)
    candidates: list[tuple[str, list[str]]] = [
        (
            f"Decide ({len(decisions)})",
            _capped(decisions, TODAY_SECTION_LIMIT, "/pending, /failed"),
        ),
        *(
            (s.title, _capped(list(s.lines), TODAY_SECTION_LIMIT, "ask for the full list"))
            for s in facts.due
        ),
        (
            "Still failing",
            _capped(
                failure_lines(facts.failures, clock, open_only=True),
                TODAY_SECTION_LIMIT,
                "soloops events",
            ),
        ),
    ]
    shown = [(name, lines) for name, lines in candidates if lines]
    parts = [title] + (["\n".join([n, *ls]) for n, ls in shown] if shown else [NOTHING_NOW])
    return Digest(
        title=title,
        text="\n\n".join(parts),
        cards=_cards(facts),
        all_clear=not shown,
        sections=tuple(name for name, _ in shown),
    )
