"""The SQLite store: one file, WAL, one writer, numbered migrations.

Two aiosqlite connections: the *writer*, used only inside :meth:`Store.write` under an
asyncio lock so there is exactly one write transaction at a time (no "database is
locked"), and the *reader*, used for queries, which in WAL mode sees the last
committed state and never blocks the writer.

Reads on the reader connection run one at a time, each to completion: SQLite starts
a read transaction with a statement and keeps it (and its snapshot) while any
statement on that connection is active, so a read overlapping another one could see
the state from before a commit that has already returned. A decision that must not
race a writer (claiming a row) reads inside the write transaction instead.

    async with Store.open(path) as store:
        async with store.write() as tx:
            await tx.execute("INSERT ...")
        rows = await store.fetchall("SELECT ...")
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import aiosqlite

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
    """The writer connection inside one open transaction."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the new rowid for an INSERT (0 when it inserted
        nothing, e.g. ``INSERT OR IGNORE`` on a duplicate), else the row count."""
        cursor = await self._conn.execute(sql, params)
        try:
            if sql.lstrip()[:6].upper() == "INSERT":
                return (cursor.lastrowid or 0) if cursor.rowcount > 0 else 0
            return cursor.rowcount
        finally:
            await cursor.close()

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for many parameter rows in a single call."""
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read inside the transaction (sees its own uncommitted writes)."""
        async with self._conn.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read all rows inside the transaction."""
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())


class Store:
    """An open soloops database. Use :meth:`open` as an async context manager."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self._writer: aiosqlite.Connection | None = writer
        self._reader: aiosqlite.Connection | None = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[Self]:
        """Open (and create or migrate) the database at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await _connect(path)
            try:
                await _migrate(writer)
                reader = await _connect(path)
            except BaseException:
                await writer.close()
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
            await reader.close()
        if writer is not None:
            await writer.close()

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StoreClosedError("the store is closed; use it inside 'async with Store.open()'")
        return self._reader

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """One write transaction: commits on success, rolls back on any error."""
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreClosedError(
                    "the store is closed; use it inside 'async with Store.open()'"
                )
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(conn)
            except BaseException:
                await conn.rollback()
                raise
            else:
                await conn.commit()

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read one row from the last committed state."""
        async with self._read_lock, self.reader.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read all rows from the last committed state."""
        async with self._read_lock, self.reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

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


def _damaged(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "not a database" in text or "malformed" in text or "corrupt" in text


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are explicit.
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
    except BaseException:
        # An unclosed connection keeps its thread alive: the process would never exit.
        await conn.close()
        raise
    return conn


async def _migrate(conn: aiosqlite.Connection) -> None:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
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
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            await conn.rollback()
            if isinstance(exc, sqlite3.DatabaseError) and _damaged(exc):
                raise
            raise MigrationError(f"migration {version} failed: {exc}") from exc
