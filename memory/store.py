"""The SQLite store: one file, WAL, one writer, numbered migrations.

Two stdlib ``sqlite3`` connections used on the event loop's own thread: the *writer*,
used only inside :meth:`Store.write` under an asyncio lock so there is exactly one write
transaction at a time (no "database is locked"), and the *reader*, used for queries,
which in WAL mode sees the last committed state and never blocks the writer.

Why on the loop thread and not in a worker thread (aiosqlite): soloops's statements
are point reads and small writes that take microseconds, and a WAL commit with
``synchronous=NORMAL`` takes ~10 µs, while every hop to a database thread and back
costs ~30-70 µs plus an event-loop wake-up. Running them inline makes a message cost a
few commits' worth of time instead of hundreds (see ``make bench``). Anything slow
(a full scan for ``doctor``, an export) runs in the CLI, not in the serving process.

Every read runs to completion and closes its cursor before returning, so no read
transaction stays open: a read issued after a commit always sees that commit.

A decision that must not race a writer (claiming a row) reads inside the write
transaction instead.

    async with Store.open(path) as store:
        async with store.write() as tx:
            await tx.execute("INSERT ...")
        rows = await store.fetchall("SELECT ...")
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from memory.errors import CorruptDatabaseError, MigrationError, StoreClosedError
from memory.migrations import MIGRATIONS, SCHEMA_VERSION

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL in WAL mode survives application crashes; only power loss can roll back
    # the last commits (sqlite.org, PRAGMA synchronous).
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

Params = Sequence[Any] | dict[str, Any]


class Transaction:
    """The writer connection inside one open transaction.

    Code that keeps an in-memory view of the database (the chain head, a ready queue)
    registers :meth:`on_commit` callbacks, which run only once the transaction has
    committed, and :meth:`on_rollback` callbacks, which run if it did not: a cache is
    never updated with something that did not reach the database.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        publish: Callable[[str, object], None] = lambda topic, value: None,
    ) -> None:
        self._conn = conn
        self._publish = publish
        self._on_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []
        self.scratch: dict[str, Any] = {}  # per-transaction state of in-memory views

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after this transaction commits (never if it rolls back)."""
        self._on_commit.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this transaction rolls back."""
        self._on_rollback.append(callback)

    def publish(self, topic: str, value: object) -> None:
        """Tell the store's subscribers of ``topic`` about ``value`` once committed."""
        self._on_commit.append(lambda: self._publish(topic, value))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the new rowid for an INSERT (0 when it inserted
        nothing, e.g. ``INSERT OR IGNORE`` on a duplicate), else the row count."""
        with closing(self._conn.execute(sql, params)) as cursor:
            if sql.lstrip()[:6].upper() == "INSERT":
                return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for many parameter rows in a single call."""
        self._conn.executemany(sql, rows).close()

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read inside the transaction (sees its own uncommitted writes)."""
        return _one(self._conn, sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read all rows inside the transaction."""
        return _all(self._conn, sql, params)


class Store:
    """An open soloops database. Use :meth:`open` as an async context manager."""

    def __init__(self, path: Path, writer: sqlite3.Connection, reader: sqlite3.Connection):
        self.path = path
        self._writer: sqlite3.Connection | None = writer
        self._reader: sqlite3.Connection | None = reader
        self._write_lock = asyncio.Lock()
        self._subscribers: dict[str, list[Callable[[object], None]]] = {}
        # In-memory views of committed state, owned by the memory modules (e.g. the
        # event log's chain head), shared by every repository on this store.
        self.cache: dict[str, Any] = {}

    def subscribe(self, topic: str, callback: Callable[[object], None]) -> None:
        """Call ``callback(value)`` after each commit that published ``topic``."""
        self._subscribers.setdefault(topic, []).append(callback)

    def unsubscribe(self, topic: str, callback: Callable[[object], None]) -> None:
        """Stop calling ``callback`` for ``topic``."""
        callbacks = self._subscribers.get(topic, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def _publish(self, topic: str, value: object) -> None:
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(value)
            except Exception:  # a subscriber's bug must not undo a committed write
                logging.getLogger(__name__).exception("a %s subscriber failed", topic)

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Self]:
        """Open (and create or migrate) the database at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = _connect(path)
            try:
                _migrate(writer)
                reader = _connect(path)
            except BaseException:
                writer.close()
                raise
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and not _damaged(exc):
                raise
            raise CorruptDatabaseError(
                f"the database {path} is damaged ({exc}). Stop soloops and restore the"
                " last backup (see 'Backup and restore' in the README), then run"
                " 'soloops doctor'."
            ) from exc
        store = cls(path, writer, reader)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        """Close both connections. Idempotent."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            reader.close()
        if writer is not None:
            writer.close()

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreClosedError("the store is closed; use it inside 'async with Store.open()'")
        return self._reader

    def write(self) -> _Writing:
        """One write transaction: commits on success, rolls back on any error.

        Use as ``async with store.write() as tx``. A plain class rather than
        ``@asynccontextmanager``: every message opens several, and the generator
        machinery cost more than the commit's own Python part.
        """
        return _Writing(self)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read one row from the last committed state."""
        return _one(self.reader, sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read all rows from the last committed state."""
        return _all(self.reader, sql, params)

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        """Read the first column of the first row, or None."""
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return int(await self.scalar("PRAGMA user_version"))

    async def quick_check(self) -> str:
        """SQLite's own consistency check: 'ok' or the first problem found."""
        return str(await self.scalar("PRAGMA quick_check"))


class _Writing:
    """The async context of :meth:`Store.write`."""

    __slots__ = ("_conn", "_store", "_tx")

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __aenter__(self) -> Transaction:
        store = self._store
        await store._write_lock.acquire()
        try:
            conn = store._writer
            if conn is None:
                raise StoreClosedError(
                    "the store is closed; use it inside 'async with Store.open()'"
                )
            conn.execute("BEGIN IMMEDIATE").close()
        except BaseException:
            store._write_lock.release()
            raise
        self._conn = conn
        self._tx = Transaction(conn, store._publish)
        return self._tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn, tx = self._conn, self._tx
        try:
            if exc_type is None:
                try:
                    conn.commit()
                except BaseException:
                    _roll_back(conn, tx)
                    raise
                for callback in tx._on_commit:
                    callback()
            else:
                _roll_back(conn, tx)
        finally:
            self._store._write_lock.release()


def _roll_back(conn: sqlite3.Connection, tx: Transaction) -> None:
    if conn.in_transaction:
        conn.rollback()
    for callback in tx._on_rollback:
        callback()


def _damaged(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _one(conn: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Row | None:
    # Closing the cursor ends the statement, so no read snapshot outlives the call.
    with closing(conn.execute(sql, params)) as cursor:
        row: sqlite3.Row | None = cursor.fetchone()
        return row


def _all(conn: sqlite3.Connection, sql: str, params: Params) -> list[sqlite3.Row]:
    with closing(conn.execute(sql, params)) as cursor:
        return cursor.fetchall()


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are explicit.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            conn.execute(pragma).close()
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    with closing(conn.execute("PRAGMA user_version")) as cursor:
        row = cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise MigrationError(
            f"the database is at schema version {current}, newer than this soloops "
            f"({SCHEMA_VERSION}); upgrade soloops or restore a matching backup"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[version - 1]
        # executescript commits implicitly, so the version bump rides inside the script.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            if isinstance(exc, sqlite3.DatabaseError) and _damaged(exc):
                raise
            raise MigrationError(f"migration {version} failed: {exc}") from exc
