"""Read-only commands beside a running soloops: ``soloops events`` and ``soloops digest --print``.

Both read the database through a read-only snapshot (:mod:`memory.snapshot`), so they
never take the home's lock, never migrate or write the database, and never block the
running instance's writer. ``events --follow`` keeps printing new events by polling
(a short interval is fine for a command line) until Ctrl-C, SIGTERM, Ctrl-D at a
terminal, or the reader of its output going away (``| head``), all quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from agents.digest_chart import week_chart
from agents.digest_compose import compose_digest
from config import Settings
from memory.clock import to_iso
from memory.errors import SnapshotError
from memory.events import Event, since_sql
from memory.files import FileStore
from memory.reports import gather_digest_facts
from memory.snapshot import read_snapshot

FOLLOW_POLL_S = 0.5


def read_events(
    conn: sqlite3.Connection,
    *,
    since: datetime | None = None,
    kind: str | None = None,
    subject: str | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[Event]:
    """Events after sequence number ``after``, oldest first; ``kind`` matches exactly or
    as a dotted prefix, ``subject`` exactly; ``limit`` keeps the newest N."""
    where: list[str] = ["seq > ?"]
    params: list[object] = [after]
    if since is not None:
        where.append(since_sql())
        params += [to_iso(since)] * 2
    if kind:
        escaped = kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(kind = ? OR kind LIKE ? ESCAPE '\\')")
        params += [kind, f"{escaped}.%"]
    if subject:
        where.append("subject = ?")
        params.append(subject)
    sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Event.from_row(row) for row in reversed(conn.execute(sql, params).fetchall())]


def render_event(event: Event, *, as_json: bool) -> str:
    """One line: JSON, or tab-separated seq, time, kind, actor, subject, payload."""
    if as_json:
        return json.dumps(event.as_json(), ensure_ascii=False, sort_keys=True)
    payload = json.dumps(event.payload, ensure_ascii=False)
    return (
        f"#{event.seq}\t{event.ts:%Y-%m-%d %H:%M:%S}\t{event.kind}\t{event.actor}\t"
        f"{event.subject}\t{payload}"
    )


def _quiet_stdout() -> None:
    """The reader went away: send the rest (and Python's final flush) to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# 128 + SIGPIPE: what a shell reports for a writer whose reader went away (``| head``),
# so ``set -o pipefail`` scripts can tell the output was cut.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE


async def print_events(
    settings: Settings,
    *,
    since: datetime | None,
    kind: str | None,
    subject: str | None,
    limit: int | None,
    as_json: bool,
    follow: bool,
    out: TextIO | None = None,
    poll_s: float = FOLLOW_POLL_S,
    redact: Callable[[str], str] = lambda text: text,
    error: Callable[[str], None] | None = None,
) -> int:
    """``soloops events``: print the matching events; with ``follow``, keep printing.

    Every line goes through ``redact``. A ``kind`` that matches no event kind in the
    log at all is a mistake, said through ``error`` (exit 2); a closed pipe ends it
    quietly with :data:`EXIT_PIPE_CLOSED`, as a shell reports ``| head``.
    """
    out = out or sys.stdout
    say = error or (lambda message: print(f"soloops: {message}", file=sys.stderr))
    path = settings.database_path
    stop = asyncio.Event()

    def read(after: int, newest: int | None) -> list[Event]:
        with read_snapshot(path) as conn:
            return read_events(
                conn, since=since, kind=kind, subject=subject, after=after, limit=newest
            )

    try:
        found = await asyncio.to_thread(read, 0, limit)
    except SnapshotError as exc:
        say(str(exc))
        return 1
    if kind and not found:
        known = await asyncio.to_thread(_kinds, path)
        if not any(k == kind or k.startswith(kind + ".") for k in known):
            prefixes = sorted({k.split(".", 1)[0] for k in known})
            say(
                f"no event of kind {kind!r} in the log. Use a kind or a dotted prefix of one: "
                + (", ".join(prefixes) if prefixes else "(the log is empty)")
                + ". `soloops events` lists them all."
            )
            return 2
    undo = _stop_on_signals_and_eof(stop) if follow else (lambda: None)
    try:
        last = 0
        while True:
            for event in found:
                out.write(redact(render_event(event, as_json=as_json)) + "\n")
                last = event.seq
            out.flush()
            if not follow:
                return 0
            if last == 0:  # nothing matched yet: start from the log's end, not its start
                last = await asyncio.to_thread(_last_seq, path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)
            if stop.is_set():
                return 0
            found = await asyncio.to_thread(read, last, None)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE_CLOSED
    finally:
        undo()


def _kinds(path: Any) -> list[str]:
    with read_snapshot(path) as conn:
        return [str(row[0]) for row in conn.execute("SELECT DISTINCT kind FROM events")]


def _last_seq(path: Any) -> int:
    with read_snapshot(path) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


def _stop_on_signals_and_eof(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watching = False
    if sys.stdin.isatty():  # Ctrl-D at a terminal; a pipe or /dev/null is not watched
        fd = sys.stdin.fileno()

        def readable() -> None:
            if not os.read(fd, 4096):
                stop.set()

        loop.add_reader(fd, readable)
        watching = True

    def undo() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if watching:
            loop.remove_reader(sys.stdin.fileno())

    return undo


async def print_digest(settings: Settings, out: TextIO | None = None) -> int:
    """``soloops digest --print``: today's digest text and the chart's path.

    Read only beside a running soloops (the chart is written to the home's files).
    Feature sections (due reminders, invoices) come from the running features' agents,
    so they are in ``/digest`` in chat, not here.
    """
    out = out or sys.stdout
    try:
        facts = await gather_digest_facts(
            settings.database_path,
            now=datetime.now(UTC),
            timezone=settings.timezone,
            budget_for=settings.budget_for,
        )
    except SnapshotError as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 1
    digest = compose_digest(facts)
    chart = await asyncio.to_thread(week_chart, facts.week)
    local = facts.now.astimezone(ZoneInfo(settings.timezone))
    path = await FileStore(settings.files_dir).save(chart, f"digest-{local:%Y-%m-%d}.png")
    try:
        out.write(f"{digest.text}\n\nChart: {path}\n")
        out.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return 0
