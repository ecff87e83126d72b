"""Read-only reports over the store: the digest's facts and the metrics' numbers.

Everything is read in one snapshot (:func:`memory.snapshot.read_snapshot`) by
synchronous functions over a ``sqlite3`` connection; the async wrappers run the whole
read in one ``asyncio.to_thread`` call. Every query rides an existing index:

- failures, recoveries, activity, the week, scheduled runs and latencies: a rowid
  range of ``events`` from :func:`memory.events.since_sql` (``event_days`` names where
  a time's day starts), then ``ts``; the ``+kind`` keeps SQLite on that range should
  a kind index come back (a kind spans the whole history, the window is one day);
- dead letters: ``tasks_state``; cards: ``approvals_pending``; deliveries:
  ``outbox_pending`` (its leading ``state``); action and spend rows of today:
  ``actions_agent_day`` / ``spend_agent_day`` scanned as covering indexes.

Failure sources (the events today's code writes): ``task.failed`` (an agent raised),
``task.dead`` (an action gave up; the connector comes from its ``actions`` row),
``reply.failed`` (a platform refused a reply) and ``breaker.opened``. A failure counts
as recovered when the same thing worked after it: a ``task.succeeded`` of the same
task kind, an ``action.succeeded`` of the same connector, a ``reply.sent`` to the same
platform.

Scheduled runs come from the scheduler's ``job.late`` / ``job.skipped`` events
(memory/jobs.py writes them; subject ``job:<id>``; payload ``scheduled_at`` or
``first``/``last``, ``missed_since``, ``count``, ``reasons``): this module only reads them.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from config import BudgetSettings
from config.runbooks import runbook_for_error
from memory.clock import from_iso, to_iso
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
)
from memory.events import hash_hex, since_sql
from memory.snapshot import read_snapshot

FAILURE_KINDS = ("task.failed", "task.dead", "reply.failed", "breaker.opened")
OUTCOME_KINDS = ("task.succeeded", "task.failed", "task.dead")
# The scheduler (memory/jobs.py) writes these; their payloads are read below.
SCHEDULE_KINDS = {"job.late": "late", "job.skipped": "skipped"}
# What a failure's scope must do afterwards to count as recovered: (event kind, payload key).
RECOVERY = {
    "task": ("task.succeeded", "kind"),
    "connector": ("action.succeeded", "connector"),
    "platform": ("reply.sent", "platform"),
}
LIST_LIMIT = 100


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """The store's part of the metrics: task states, outbox depth, action latencies."""

    tasks: dict[str, int]
    outbox_depth: int
    action_latencies: tuple[float, ...]


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _utc_day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: daily budgets reset then (agents/lifecycle.py)."""
    return datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)


def _failure(row: sqlite3.Row) -> tuple[Failure, str]:
    """A failure event as a :class:`Failure` and its scope (what must work again)."""
    payload: dict[str, Any] = json.loads(row["payload"])
    kind, at = row["kind"], from_iso(row["ts"])
    book: str | None
    error = str(payload.get("error") or "")
    if kind == "task.failed":
        task_kind = str(payload.get("kind", "?"))
        error_type = payload.get("error_type")
        # No generic fallback here: unknown causes stay apart, one line each in the digest.
        book = runbook_for_error(error, error_type=error_type)
        cause = error or str(error_type)
        return Failure(at, "task", cause, book, row["subject"]), f"task:{task_kind}"
    if kind == "task.dead":
        connector = row["connector"] or "?"
        book = runbook_for_error(error, connector=connector, failure=payload.get("kind"))
        return Failure(at, "action", error, book, row["subject"]), f"connector:{connector}"
    if kind == "reply.failed":
        platform = str(payload.get("platform", "?"))
        book = runbook_for_error(error) or "delivery-failed"
        cause = error or "the platform refused the reply"
        return Failure(at, "reply", cause, book, row["subject"]), f"platform:{platform}"
    connector = str(row["subject"]).removeprefix("connector:")
    cause = f"{connector} breaker opened after {payload.get('failures', '?')} failures"
    return Failure(at, "breaker", cause, "breaker-open", row["subject"]), f"connector:{connector}"


def read_failures(conn: sqlite3.Connection, since: datetime) -> list[Failure]:
    """Failures since ``since``, oldest first, each marked recovered if it was."""
    rows = conn.execute(
        "SELECT e.seq, e.ts, e.kind, e.subject, e.payload, a.connector FROM events e"
        " LEFT JOIN actions a ON e.kind = 'task.dead'"
        " AND a.id = json_extract(e.payload, '$.action')"
        f" WHERE {since_sql('e.')} AND +e.kind IN ({_marks(FAILURE_KINDS)})"
        " ORDER BY e.ts, e.seq",
        (to_iso(since), to_iso(since), *FAILURE_KINDS),
    ).fetchall()
    found = [_failure(row) for row in rows]
    last_failure: dict[str, datetime] = {}
    for failure, scope in found:
        last_failure[scope] = max(failure.at, last_failure.get(scope, failure.at))
    recovered: dict[str, datetime] = {}
    for scope, last in last_failure.items():
        family, _, name = scope.partition(":")
        success_kind, key = RECOVERY[family]
        first = conn.execute(
            f"SELECT MIN(ts) FROM events WHERE {since_sql()} AND ts > ? AND +kind = ?"
            " AND json_extract(payload, ?) = ?",
            (*[to_iso(last)] * 3, success_kind, f"$.{key}", name),
        ).fetchone()[0]
        if first is not None:
            recovered[scope] = from_iso(first)
    return [
        Failure(f.at, f.source, f.cause, f.runbook, f.subject, recovered.get(scope))
        for f, scope in found
    ]


def read_cards(
    conn: sqlite3.Connection,
) -> tuple[list[DeadLetter], list[PendingApproval]]:
    """Dead letters (with their pending Retry / Discard card) and other pending cards."""
    cards = conn.execute(
        "SELECT id, code, task_id, agent, summary, action, purpose, created_at, expires_at"
        " FROM approvals WHERE state = 'pending' ORDER BY id"
    ).fetchall()
    by_task = {int(c["task_id"]): c for c in cards if c["purpose"] == "dead_letter"}
    action_ids = [int(json.loads(c["action"])["dead_letter"]) for c in by_task.values()]
    connectors = {
        int(r["id"]): str(r["connector"])
        for r in conn.execute(
            f"SELECT id, connector FROM actions WHERE id IN ({_marks(action_ids)})", action_ids
        )
    }
    dead: list[DeadLetter] = []
    for task in conn.execute(
        "SELECT id, kind, error, updated_at FROM tasks WHERE state = 'dead' ORDER BY id DESC"
        " LIMIT ?",
        (LIST_LIMIT,),
    ):
        error = str(task["error"] or "gave up")
        card = by_task.get(int(task["id"]))
        ref = summary = connector = None
        if card is not None:
            ref = CardRef(int(card["id"]), str(card["code"]), "dead_letter")
            summary = str(card["summary"]).splitlines()[0]
            connector = connectors.get(int(json.loads(card["action"])["dead_letter"]))
        # The executor words a give-up after retries as "... (after N attempts)".
        failure = "exhausted" if "attempts)" in error else "permanent"
        book = runbook_for_error(error, connector=connector, failure=failure)
        dead.append(
            DeadLetter(
                task_id=int(task["id"]),
                summary=summary or str(task["kind"]),
                error=error,
                at=from_iso(task["updated_at"]),
                runbook=book,
                card=ref,
            )
        )
    dead.reverse()
    pending = [
        PendingApproval(
            card=CardRef(int(c["id"]), str(c["code"]), str(c["purpose"])),
            agent=str(c["agent"]),
            summary=str(c["summary"]).splitlines()[0],
            created_at=from_iso(c["created_at"]),
            expires_at=from_iso(c["expires_at"]),
        )
        for c in cards
        if c["purpose"] != "dead_letter"
    ]
    return dead, pending[:LIST_LIMIT]


def read_failed_deliveries(conn: sqlite3.Connection, since: datetime) -> list[FailedDelivery]:
    """Replies queued since ``since`` that could not be delivered."""
    rows = conn.execute(
        "SELECT id, platform, chat_id, last_error, created_at FROM outbox"
        " WHERE state = 'failed' AND created_at >= ? ORDER BY id LIMIT ?",
        (to_iso(since), LIST_LIMIT),
    )
    return [
        FailedDelivery(
            int(r["id"]),
            str(r["platform"]),
            str(r["chat_id"]),
            str(r["last_error"] or "refused"),
            from_iso(r["created_at"]),
        )
        for r in rows
    ]


def read_activity(conn: sqlite3.Connection, since: datetime) -> list[AgentActivity]:
    """Per agent: tasks that succeeded and failed, and actions proposed, since ``since``."""
    done: dict[str, list[int]] = {}
    for row in conn.execute(
        "SELECT t.agent, e.kind, COUNT(*) AS n FROM events e"
        " JOIN tasks t ON t.id = CAST(substr(e.subject, 6) AS INTEGER)"
        f" WHERE {since_sql('e.')} AND +e.kind IN ({_marks(OUTCOME_KINDS)})"
        " GROUP BY t.agent, e.kind",
        (to_iso(since), to_iso(since), *OUTCOME_KINDS),
    ):
        counts = done.setdefault(str(row["agent"]), [0, 0, 0])
        counts[0 if row["kind"] == "task.succeeded" else 1] += int(row["n"])
    for row in conn.execute(
        "SELECT agent, COUNT(*) AS n FROM actions WHERE created_at >= ? GROUP BY agent",
        (to_iso(since),),
    ):
        done.setdefault(str(row["agent"]), [0, 0, 0])[2] = int(row["n"])
    return [AgentActivity(agent, s, f, a) for agent, (s, f, a) in sorted(done.items())]


def read_budgets(
    conn: sqlite3.Connection, now: datetime, budget_for: Callable[[str], BudgetSettings]
) -> list[BudgetUse]:
    """Today's use of each agent's budget that used any, extensions included."""
    day = _utc_day_start(now)
    actions = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT agent, COUNT(*) FROM actions WHERE created_at >= ? AND attempts > 0"
            " GROUP BY agent",
            (to_iso(day),),
        )
    }
    spend = {
        str(r[0]): float(r[1])
        for r in conn.execute(
            "SELECT agent, SUM(cost) FROM spend WHERE at >= ? GROUP BY agent", (to_iso(day),)
        )
    }
    extra = {
        str(r["agent"]): int(r["extra_actions"])
        for r in conn.execute(
            "SELECT agent, extra_actions FROM agent_state WHERE extended_day = ?",
            (day.date().isoformat(),),
        )
    }
    uses = []
    for agent in sorted(set(actions) | set(spend)):
        budget = budget_for(agent)
        uses.append(
            BudgetUse(
                agent=agent,
                actions=actions.get(agent, 0),
                actions_limit=budget.actions_per_day + extra.get(agent, 0),
                spend=round(spend.get(agent, 0.0), 6),
                spend_limit=budget.spend_per_day,
            )
        )
    return uses


def _schedule_note(kind: str, payload: dict[str, Any]) -> str:
    if kind == "job.late":
        since = payload.get("missed_since")
        folded = int(payload.get("coalesced") or 0)
        parts = [
            f"missed since {since}" if since else "",
            f"{folded} runs folded" if folded else "",
        ]
        return ", ".join(p for p in parts if p)
    count = int(payload.get("count") or 0)
    reasons = ", ".join(str(r) for r in payload.get("reasons") or [])
    return f"{count} skipped" + (f" ({reasons})" if reasons else "")


def read_scheduled(conn: sqlite3.Connection, since: datetime) -> list[ScheduledRun]:
    """Scheduled runs since ``since`` that ran late or were skipped."""
    runs = []
    for row in conn.execute(
        f"SELECT ts, kind, subject, payload FROM events WHERE {since_sql()}"
        f" AND +kind IN ({_marks(list(SCHEDULE_KINDS))}) ORDER BY ts, seq",
        (to_iso(since), to_iso(since), *SCHEDULE_KINDS),
    ):
        payload: dict[str, Any] = json.loads(row["payload"])
        at = from_iso(row["ts"])
        # job.late names its instant; job.skipped names the first and last it skipped.
        stamp = payload.get("scheduled_at") or payload.get("last") or payload.get("first")
        try:
            due = datetime.fromisoformat(str(stamp)) if stamp else at
        except ValueError:
            due = at
        subject = str(row["subject"])
        runs.append(
            ScheduledRun(
                job=str(payload.get("job") or subject.removeprefix("job:")),
                scheduled_for=due if due.tzinfo else due.replace(tzinfo=UTC),
                outcome=SCHEDULE_KINDS[row["kind"]],
                at=at,
                note=_schedule_note(row["kind"], payload),
            )
        )
    return runs


def read_week(
    conn: sqlite3.Connection, now: datetime, timezone: str, days: int = 7
) -> list[DayCount]:
    """Tasks succeeded and failed (or dead) per local day, the last ``days`` days."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    counts = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        start = datetime.combine(day, time(), tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
        row = conn.execute(
            "SELECT COALESCE(SUM(kind = 'task.succeeded'), 0),"
            " COALESCE(SUM(kind != 'task.succeeded'), 0)"
            f" FROM events WHERE {since_sql()} AND ts < ? AND +kind IN ({_marks(OUTCOME_KINDS)})",
            (to_iso(start), to_iso(start), to_iso(end), *OUTCOME_KINDS),
        ).fetchone()
        counts.append(DayCount(day, int(row[0]), int(row[1])))
    return counts


def read_chain_head(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """The newest event's sequence number and hash (0, None for an empty log)."""
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, None) if row is None else (int(row[0]), hash_hex(row[1]))


def read_digest_facts(
    conn: sqlite3.Connection,
    *,
    now: datetime,
    timezone: str = "UTC",
    window: timedelta = timedelta(hours=24),
    budget_for: Callable[[str], BudgetSettings] | None = None,
) -> DigestFacts:
    """Every fact of the digest (feature sections aside), from one open snapshot."""
    since = now - window
    dead, pending = read_cards(conn)
    length, head = read_chain_head(conn)
    return DigestFacts(
        now=now,
        timezone=timezone,
        failures=tuple(read_failures(conn, since)),
        dead_letters=tuple(dead),
        pending_approvals=tuple(pending),
        failed_deliveries=tuple(read_failed_deliveries(conn, since)),
        activity=tuple(read_activity(conn, since)),
        budgets=tuple(read_budgets(conn, now, budget_for)) if budget_for else (),
        scheduled=tuple(read_scheduled(conn, since)),
        week=tuple(read_week(conn, now, timezone)),
        chain_head=head,
        chain_length=length,
    )


async def gather_digest_facts(
    path: Path,
    *,
    now: datetime,
    timezone: str = "UTC",
    window: timedelta = timedelta(hours=24),
    budget_for: Callable[[str], BudgetSettings] | None = None,
) -> DigestFacts:
    """:func:`read_digest_facts` over a snapshot of the database at ``path``, off the loop.

    Feature sections (due reminders, follow-ups...) are not read here: add them with
    ``dataclasses.replace(facts, due=...)``.
    """

    def read() -> DigestFacts:
        with read_snapshot(path) as conn:
            return read_digest_facts(
                conn, now=now, timezone=timezone, window=window, budget_for=budget_for
            )

    return await asyncio.to_thread(read)


def read_store_metrics(
    conn: sqlite3.Connection, now: datetime, window: timedelta = timedelta(hours=24)
) -> StoreMetrics:
    """Tasks by state, pending replies, and how long actions took in the window."""
    tasks = {
        str(r[0]): int(r[1])
        for r in conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state")
    }
    depth = int(conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0])
    started: dict[str, datetime] = {}
    latencies: list[float] = []
    for row in conn.execute(
        f"SELECT ts, kind, subject FROM events WHERE {since_sql()}"
        " AND +kind IN ('action.started', 'action.succeeded', 'action.retry') ORDER BY ts, seq",
        (to_iso(now - window), to_iso(now - window)),
    ):
        if row["kind"] == "action.started":
            started[row["subject"]] = from_iso(row["ts"])
        elif row["subject"] in started:  # an attempt ended: succeeded, or will be retried
            begun = started.pop(row["subject"])
            latencies.append((from_iso(row["ts"]) - begun).total_seconds())
    return StoreMetrics(tasks, depth, tuple(latencies))


async def gather_store_metrics(
    path: Path, now: datetime, window: timedelta = timedelta(hours=24)
) -> StoreMetrics:
    """:func:`read_store_metrics` over a snapshot of the database at ``path``, off the loop."""

    def read() -> StoreMetrics:
        with read_snapshot(path) as conn:
            return read_store_metrics(conn, now, window)

    return await asyncio.to_thread(read)
