"""A consistent read-only view of the database, beside a running soloops.

Reports and exports read many tables and must see them as of one instant. They open a
connection of their own, read-only, and hold one read transaction: in WAL mode that
is a snapshot (later commits stay invisible to it) and it never blocks the writer.
The store's shared reader connection is not used, so its other users are not pulled
into a long transaction. The connection is synchronous: callers run their whole read
in one ``asyncio.to_thread`` call.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory.errors import SnapshotError


@contextmanager
def read_snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection inside one read transaction on the database at ``path``.

    Raises:
        SnapshotError: there is no database at ``path``, or it cannot be read.
    """
    if not path.is_file():
        raise SnapshotError(f"there is no soloops database at {path}; check SOLOOPS_HOME")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot open {path} for reading: {exc}") from exc
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN")
        # A deferred transaction takes its snapshot at the first read: take it now.
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        yield conn
    finally:
        # No transaction may be left to end (the read failed before it began).
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()
