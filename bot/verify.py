"""``soloops verify``: the event chain holds, and derived state agrees with its source.

Checks:

1. the hash chain of the event log (:meth:`memory.events.EventLog.verify`);
2. every task's state against its last ``task.*`` event (the event log is the source);
3. the FAISS index against the ``memories`` table: every embedded row has a vector,
   and the index holds no vector of a row that is gone.

Checks 2 and 3 read one snapshot. Not every move of a task writes a ``task.*`` event
(a retry after a transient failure writes ``action.retry``), so a state agrees with an
event when it is that event's state or one the quiet moves reach from it
(:data:`QUIET_MOVES`); a task the log says succeeded but the table calls failed does
not. A missing index file is fine (it is rebuilt from the table at start). A running
soloops saves its index from time to time, so memories written since the last save
can show as missing from it until then.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from config import Settings
from memory.errors import SnapshotError
from memory.events import EventLog
from memory.migrations import SCHEMA_VERSION
from memory.snapshot import read_snapshot
from memory.store import Store
from memory.tasks import TaskState

S = TaskState

EVENT_STATES: Final[dict[str, TaskState]] = {
    "task.queued": S.QUEUED,
    "task.requeued": S.QUEUED,
    "task.retried": S.QUEUED,
    "task.resumed": S.QUEUED,
    "task.started": S.RUNNING,
    "task.waiting": S.WAITING_APPROVAL,
    "task.succeeded": S.SUCCEEDED,
    "task.failed": S.FAILED,
    "task.dead": S.DEAD,
    "task.discarded": S.CANCELLED,
}
"""The state each ``task.*`` event leaves its task in."""

QUIET_MOVES: Final[dict[TaskState, frozenset[TaskState]]] = {
    # action.retry / action.delayed / a budget pause requeue; action.uncertain waits.
    S.RUNNING: frozenset({S.QUEUED, S.WAITING_APPROVAL}),
    # a reconcile card's answer: Retry requeues, expiry leaves the task dead.
    S.WAITING_APPROVAL: frozenset({S.QUEUED, S.DEAD}),
}
"""Moves the coordinator makes without a ``task.*`` event (with another event)."""

SHOWN = 10


@dataclass(slots=True)
class VerifyReport:
    """What was checked (``notes``) and what disagrees (``problems``)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def consistent_states(event_kind: str) -> frozenset[TaskState] | None:
    """The states a task may be in when ``event_kind`` is its last ``task.*`` event
    (None for an event this check does not know)."""
    start = EVENT_STATES.get(event_kind)
    if start is None:
        return None
    seen, todo = {start}, [start]
    while todo:
        for nxt in QUIET_MOVES.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def _ids(ids: set[int]) -> str:
    shown = ", ".join(f"#{i}" for i in sorted(ids)[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def check_tasks(conn: sqlite3.Connection, report: VerifyReport) -> None:
    """Each task's state against its last ``task.*`` event."""
    last: dict[int, tuple[str, int]] = {}
    for subject, kind, seq in conn.execute(
        # Bare columns with MAX(): SQLite takes them from the row holding the maximum.
        "SELECT subject, kind, MAX(seq) FROM events"
        " WHERE kind >= 'task.' AND kind < 'task/' AND subject LIKE 'task:%' GROUP BY subject"
    ):
        try:
            last[int(str(subject)[5:])] = (str(kind), int(seq))
        except ValueError:
            continue
    checked, unknown = 0, set()
    for task_id, state in conn.execute("SELECT id, state FROM tasks ORDER BY id"):
        checked += 1
        if task_id not in last:
            report.problems.append(f"task #{task_id} is {state!r} but no task event records it")
            continue
        kind, seq = last[task_id]
        allowed = consistent_states(kind)
        if allowed is None:
            unknown.add(kind)
        elif state not in allowed:
            said = EVENT_STATES[kind].value
            report.problems.append(
                f"task #{task_id} is {state!r} in the tasks table, but its last event"
                f" #{seq} ({kind}) says {said!r}"
            )
    report.notes.append(f"tasks: {checked} checked against their events")
    if unknown:
        report.notes.append(f"tasks: not checked after events {', '.join(sorted(unknown))}")


def check_index(conn: sqlite3.Connection, index_path: Path, report: VerifyReport) -> None:
    """The FAISS index against the embedded rows of ``memories``."""
    side = index_path.with_name(index_path.name + ".json")
    if not index_path.exists():
        report.notes.append("memory index: none yet (it is built from the memories table)")
        return
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
        model_id, dim = str(sidecar["model_id"]), int(sidecar["dim"])
    except (OSError, ValueError, KeyError, TypeError):
        report.problems.append(
            f"memory index: {side} is missing or unreadable; delete {index_path} and"
            " soloops rebuilds it at start"
        )
        return
    from memory.vectorindex import VectorIndex  # imports faiss: only when there is an index

    index = VectorIndex(dim, model_id)
    if index.load(index_path) is None:
        report.problems.append(
            f"memory index: {index_path} does not match its sidecar (half-written or"
            " edited); delete it and soloops rebuilds it at start"
        )
        return
    in_index = {int(i) for i in index.ids()}
    in_table = {
        int(r[0]) for r in conn.execute("SELECT id FROM memories WHERE model_id = ?", (model_id,))
    }
    missing, stale = in_table - in_index, in_index - in_table
    if missing:
        report.problems.append(
            f"memory index: memories {_ids(missing)} have vectors in the table but not in"
            f" the index ({index_path})"
        )
    if stale:
        report.problems.append(
            f"memory index: the index holds vectors of memories {_ids(stale)}, which the"
            " table does not (deleted, or embedded by another model)"
        )
    report.notes.append(f"memory index: {len(in_index)} vectors, {len(in_table)} embedded rows")


async def verify_home(database: Path, index_path: Path) -> VerifyReport:
    """Run every check on the home whose database and index are given."""
    report = VerifyReport()
    with read_snapshot(database) as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            report.problems.append(
                f"the database is at schema version {version}, this soloops expects"
                f" {SCHEMA_VERSION}; run this soloops once (it migrates), then verify again"
            )
            return report
        check_tasks(conn, report)
        check_index(conn, index_path, report)
    async with Store.open(database) as store:  # at this version: opening writes nothing
        chain = await EventLog(store).verify()
    if chain.ok:
        report.notes.insert(0, f"event chain: {chain.checked} events, intact")
    else:
        report.problems.insert(
            0, f"event chain: broken at event #{chain.first_bad_seq}: {chain.reason}"
        )
    return report


def run_verify(settings: Settings) -> int:
    """``soloops verify``: print each check; 0 when all agree, 1 naming what does not."""
    try:
        report = asyncio.run(verify_home(settings.database_path, settings.index_path))
    except SnapshotError as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 1
    for note in report.notes:
        print(f"ok: {note}")
    for problem in report.problems:
        print(f"DISAGREES: {problem}")
    print("Intact." if report.ok else f"{len(report.problems)} disagreement(s).")
    return 0 if report.ok else 1
