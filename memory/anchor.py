"""The event chain's head, anchored outside the database.

The hash chain shows an edited event, but not a database that lost its tail or was
replaced: an empty file verifies as a fresh install. ``soloops.head`` beside the
database records the last seen ``seq``, its ``hash`` and when; it is rewritten
atomically (temp file, fsync, rename, fsync of the directory) right after start,
every few minutes and at each clean stop. A database is *behind* its anchor when the
anchored event is missing or different: history was lost, and soloops refuses to
start over it until a backup is restored.

A database ahead of its anchor is normal (a crash between two anchor writes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from memory.clock import Clock, from_iso, to_iso
from memory.errors import CorruptDatabaseError, HistoryLostError
from memory.events import hash_hex
from memory.store import Store

log = logging.getLogger(__name__)

ANCHOR_SUFFIX = ".head"


@dataclass(frozen=True, slots=True)
class Anchor:
    """The chain head as last seen: sequence number, hash, time written."""

    seq: int
    hash: str
    at: datetime

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "at": to_iso(self.at)})


def anchor_path(database: Path) -> Path:
    """Where the anchor of ``database`` lives: ``soloops.db`` -> ``soloops.head``."""
    return database.with_suffix(ANCHOR_SUFFIX)


def read_anchor(path: Path) -> Anchor | None:
    """The anchor at ``path``, None when there is none (a fresh home).

    Raises:
        HistoryLostError: the file exists but cannot be read as an anchor.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return Anchor(int(data["seq"]), str(data["hash"]), from_iso(str(data["at"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise HistoryLostError(
            f"the chain anchor {path} is unreadable ({exc}); restore it with the database"
            " from a backup, or delete it to accept the database as it is"
        ) from exc


def write_anchor(path: Path, anchor: Anchor) -> None:
    """Replace the anchor atomically (0600): a crash leaves the old or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, anchor.to_json().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def describe_corruption(database: Path, exc: sqlite3.DatabaseError) -> str:
    """A message for a database SQLite cannot read, with the way back."""
    return (
        f"the database {database} is damaged ({exc}). Stop soloops and restore the last"
        " backup (see 'Backup and restore' in the README), then run 'soloops doctor'."
    )


def check_database(database: Path, anchor: Anchor | None) -> None:
    """Refuse a database that is damaged or behind its anchor; read-only.

    Raises:
        CorruptDatabaseError: SQLite cannot read the file.
        HistoryLostError: the anchored event is missing or different.
    """
    restore = (
        "Stop soloops and restore the last backup (see 'Backup and restore' in the README),"
        f" or, to start over on purpose, move {database.name} and its .head file away."
    )
    empty = not database.exists() or database.stat().st_size == 0
    if empty:
        if anchor is not None:
            raise HistoryLostError(
                f"the database {database} is missing or empty, but soloops recorded"
                f" {anchor.seq} events there (last at {to_iso(anchor.at)}). {restore}"
            )
        return
    row, last = _read_head(database, anchor.seq if anchor else 0)
    if anchor is None:
        return
    if row is None:
        have = f"only {last} events" if last else "no events"
        raise HistoryLostError(
            f"the database {database} has {have}, but soloops recorded {anchor.seq}"
            f" (last at {to_iso(anchor.at)}): history was lost. {restore}"
        )
    if row != anchor.hash:
        raise HistoryLostError(
            f"the database {database} is not the one soloops last ran on: event"
            f" #{anchor.seq} differs from the one recorded at {to_iso(anchor.at)}. {restore}"
        )


def _read_head(database: Path, seq: int) -> tuple[str | None, int]:
    """The hash of event ``seq`` (None if absent) and the newest seq, read directly."""
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header and schema
        try:
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return None, 0  # a database soloops never migrated: no history in it
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return (None if row is None else hash_hex(row[0])), int(last)
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabaseError(describe_corruption(database, exc)) from exc
    finally:
        conn.close()


class AnchorKeeper:
    """Keeps the anchor of a running database current: now, every interval, at stop."""

    def __init__(self, store: Store, path: Path, clock: Clock, interval_s: float = 300.0):
        self._store = store
        self._path = path
        self._clock = clock
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._written = asyncio.Event()

    async def write_now(self) -> Anchor | None:
        """Anchor the current head (nothing while the log is empty); return it."""
        row = await self._store.fetchone("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        if row is None:
            return None
        anchor = Anchor(int(row["seq"]), hash_hex(row["hash"]), self._clock.now())
        await asyncio.to_thread(write_anchor, self._path, anchor)
        self._written.set()
        return anchor

    async def start(self) -> None:
        """Anchor now, then every ``interval_s`` until :meth:`stop`."""
        await self.write_now()
        self._task = asyncio.create_task(self._loop(), name="chain-anchor")

    async def wait_written(self) -> None:
        """Wait for the next periodic write (tests drive the interval with this)."""
        self._written.clear()
        await self._written.wait()

    async def stop(self) -> None:
        """Stop the periodic writes and anchor the final head."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.write_now()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.write_now()
            except Exception:
                log.exception("writing the chain anchor %s failed; trying again", self._path)
