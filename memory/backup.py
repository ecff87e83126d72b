"""A consistent copy of a live database, with its chain anchor.

SQLite's online backup API copies the database page by page and restarts the copy if
a writer changes a page meanwhile, so the result is one committed state even while
soloops runs (sqlite.org/backup.html). The copy is written beside the target and
renamed into place, so a failed backup never leaves half a file under the name asked.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from memory.anchor import Anchor, anchor_path, describe_corruption, write_anchor
from memory.errors import CorruptDatabaseError, MemoryError_
from memory.events import hash_hex


class BackupError(MemoryError_):
    """The backup could not be made (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What a backup wrote."""

    path: Path
    anchor_path: Path
    events: int
    size: int


def backup_database(
    source: Path, target: Path, now: datetime, *, force: bool = False
) -> BackupResult:
    """Copy ``source`` to ``target`` (0600) and anchor the copy's chain head beside it.

    Raises:
        BackupError: no source, a target that exists without ``force``, or an I/O error.
        CorruptDatabaseError: the source cannot be read.
    """
    if not source.is_file() or source.stat().st_size == 0:
        raise BackupError(f"there is no database to back up at {source}")
    target = target.expanduser()
    if target.resolve() == source.resolve():
        raise BackupError("the backup must go to another file than the live database")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another file or pass --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = sqlite3.connect(source)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)
                head = dst.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                # A single file: the copy needs no WAL beside it to be restored.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(partial, target)
    except sqlite3.DatabaseError as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.OperationalError):
            raise BackupError(f"the backup to {target} failed: {exc}") from exc
        raise CorruptDatabaseError(describe_corruption(source, exc)) from exc
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"the backup to {target} failed: {exc.strerror or exc}") from exc
    head_path = anchor_path(target)
    if head is not None:
        write_anchor(head_path, Anchor(int(head[0]), hash_hex(head[1]), now))
    return BackupResult(
        target, head_path, 0 if head is None else int(head[0]), target.stat().st_size
    )
