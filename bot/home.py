"""The data directory (``SOLOOPS_HOME``): one process at a time, private files.

:class:`HomeLock` holds an exclusive ``fcntl.flock`` on ``soloops.lock`` for the life
of ``soloops run`` / ``soloops chat``; the kernel drops it when the process dies, so
a crash never leaves a stale lock behind. Read-only commands (``events``, ``doctor``,
``backup``) do not take it and work beside a running instance.

:func:`secure_home` makes the home 0700 and soloops's files in it 0600: notes and
full inbound texts are nobody else's business on a shared machine.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Self

from memory.anchor import anchor_path, check_database, read_anchor

log = logging.getLogger(__name__)

LOCK_NAME = "soloops.lock"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# Files soloops writes in its home (with their SQLite and rotation companions).
_PRIVATE_GLOBS = (
    "soloops.db",
    "soloops.db-wal",
    "soloops.db-shm",
    "soloops.db-journal",
    "soloops.head",
    LOCK_NAME,
    "memory.faiss",
    "memory.faiss.json",
    "logs/soloops.log*",
)


class HomeBusyError(Exception):
    """Another soloops process holds this home."""

    def __init__(self, home: Path, pid: int | None) -> None:
        self.home = home
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        stop = f"Stop it (kill {pid})" if pid else "Stop it"
        super().__init__(
            f"soloops is already running on {home}{holder}. {stop} or use another SOLOOPS_HOME."
        )


class HomeLock:
    """An exclusive lock on a home, with the holder's pid written in the lock file."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`HomeBusyError` naming the holder."""
        make_private_dir(self.home)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise HomeBusyError(self.home, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its pid is stale once nobody holds it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing; a directory soloops creates is 0700."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def secure_home(home: Path) -> list[Path]:
    """Make ``home`` 0700 and soloops's files in it 0600; return what was tightened."""
    make_private_dir(home)
    tightened: list[Path] = []
    candidates = [home, home / "logs"]
    for pattern in _PRIVATE_GLOBS:
        candidates.extend(home.glob(pattern))
    for path in candidates:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        wanted = PRIVATE_DIR if path.is_dir() else PRIVATE_FILE
        if mode & 0o077:
            path.chmod(mode & wanted)
            tightened.append(path)
    return tightened


def loose_mode(path: Path) -> int | None:
    """The group/other permission bits of ``path`` when it has any, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def prepare_home(home: Path, database: Path) -> None:
    """Before a start: tighten permissions (saying so), refuse a damaged or lost database.

    Raises:
        CorruptDatabaseError: SQLite cannot read the database.
        HistoryLostError: the database is behind the anchor beside it.
    """
    tightened = secure_home(home)
    if tightened:
        log.warning(
            "made private to their owner (they were readable by others): %s",
            ", ".join(str(p) for p in tightened),
        )
    check_database(database, read_anchor(anchor_path(database)))
