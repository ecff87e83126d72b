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

Group commit: a write is a *logical* transaction (a savepoint inside the open SQLite
transaction); the SQLite commit happens once the loop has run every coroutine that
was ready, so writers that finish in the same turn of the loop share one commit
instead of queueing one each. A durable write (the default) returns only after that
commit: "stored before acknowledged" holds exactly as with one commit per write. A
write opened with ``durable=False`` (bookkeeping whose loss in a crash changes no
outcome, e.g. marking a reply sent) returns at once and rides on the next commit.
Commit callbacks and ``publish`` run only after the SQLite commit, so nothing in
memory learns of a write that could still roll back; a read through the store
commits the finished writes first, so a writer always reads what it wrote.

Checkpoints (copying the WAL back into the database file, with two fsyncs) run off
the serving path: every so many commits (``CHECKPOINT_EVERY`` at first, then as many
as make a checkpoint copy about ``CHECKPOINT_PAGES`` pages) the store asks a thread of
its own, with a connection of its own, for a PASSIVE checkpoint, which never blocks the
writer or a reader. SQLite's own auto-checkpoint on the writer stays as the bound on
the WAL (``WAL_LIMIT_PAGES``) should the thread fall behind: it then finds most
frames already copied.

    async with Store.open(path) as store:
        async with store.write() as tx:
            await tx.execute("INSERT ...")
        rows = await store.fetchall("SELECT ...")
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, closing
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from memory.errors import CorruptDatabaseError, MigrationError, StoreClosedError
from memory.fresh_schema import FRESH_SCHEMA, FRESH_VERSION
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

# The first checkpoint is asked for after this many commits; then the interval adapts
# so that each copies about CHECKPOINT_PAGES pages (SQLite's own default is a
# checkpoint per 1,000 pages): a /help writes ~10 pages a commit, an event ~2, and a
# checkpoint costs two fsyncs however little it copies.
CHECKPOINT_EVERY = 64
CHECKPOINT_PAGES = 1000
# The writer checkpoints itself once the WAL reaches this many pages (16 MB): the WAL
# restarts from its beginning only after a checkpoint that copied all of it, which a
# thread racing a busy writer rarely manages.
WAL_LIMIT_PAGES = 4000

# Every open store of this process: a store about to begin a transaction first commits
# what another store on the same file holds open, which would otherwise wait for a
# turn of the loop that cannot come while this thread waits for SQLite's lock.
_OPEN: weakref.WeakSet[Store] = weakref.WeakSet()


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
        self._on_release: list[Callable[[], None]] = []
        self.scratch: dict[str, Any] = {}  # per-transaction state of in-memory views

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after this transaction commits (never if it rolls back)."""
        self._on_commit.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this transaction rolls back (alone, or with the commit
        it shared)."""
        self._on_rollback.append(callback)

    def on_release(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when this transaction ends well, before the shared commit.

        For views that the next transaction of the same commit must see (the chain
        head); pair it with :meth:`on_rollback` to forget the view if the commit fails.
        """
        self._on_release.append(callback)

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
        self._batch: _Batch | None = None  # the open SQLite transaction writes share
        self._commit_now = False  # a commit came due while a write was open
        self._subscribers: dict[str, list[Callable[[object], None]]] = {}
        # In-memory views of committed state, owned by the memory modules (e.g. the
        # event log's chain head), shared by every repository on this store.
        self.cache: dict[str, Any] = {}
        self._commits = 0  # since the last checkpoint was asked for
        self._checkpointer: _Checkpointer | None = None  # started at the first request

    def data_version(self) -> int:
        """A number that changes when another connection (another process, another
        :class:`Store` on the same file) commits: an in-memory view kept from this
        store's own commits is complete while it stays the same."""
        self._settle()  # as a read would: finished writes are committed first
        writer = self._writer
        if writer is None:
            raise StoreClosedError("the store is closed; use it inside 'async with Store.open()'")
        # The writer's own: the reader's number moves with every commit of the writer.
        with closing(writer.execute("PRAGMA data_version")) as cursor:
            return int(cursor.fetchone()[0])

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
        # Checkpoints come from the store's thread; this is only the bound.
        writer.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT_PAGES}").close()
        store = cls(path, writer, reader)
        _OPEN.add(store)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        """Commit finished writes, then close both connections. Idempotent."""
        if self._batch is not None and not self._write_lock.locked():
            self._commit_batch()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        _OPEN.discard(self)
        if reader is not None:
            reader.close()
        if writer is not None:
            writer.close()

    @property
    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreClosedError("the store is closed; use it inside 'async with Store.open()'")
        return self._reader

    def write(self, *, durable: bool = True) -> _Writing:
        """One write transaction: commits on success, rolls back on any error.

        Use as ``async with store.write() as tx``. A durable write returns once its
        commit (shared with the writes of the same turn of the loop) is on disk;
        ``durable=False`` returns at once, the commit follows within the turn. A plain
        class rather than ``@asynccontextmanager``: every message opens several, and
        the generator machinery cost more than the commit's own Python part.
        """
        return _Writing(self, durable)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read one row from the last committed state."""
        return _one(self._settled(), sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read all rows from the last committed state."""
        return _all(self._settled(), sql, params)

    def _settled(self) -> sqlite3.Connection:
        """The connection a read uses, once the finished writes are committed.

        The writer when no write transaction is open: it sees exactly the last
        committed state too, and its page cache survives its own commits, while the
        reader's is dropped by every commit (a re-read of each page it touches).
        """
        self._settle()
        writer = self._writer
        if writer is not None and self._batch is None and not self._write_lock.locked():
            return writer
        return self.reader

    def _settle(self) -> None:
        # A read after a write sees it: commit the finished writes first.
        batch = self._batch
        if batch is not None and batch.released and not self._write_lock.locked():
            self._commit_batch()

    def _schedule_commit(self, batch: _Batch) -> None:
        if not batch.scheduled:
            batch.scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_due, batch)

    def _commit_due(self, batch: _Batch) -> None:
        if self._batch is not batch:
            return  # already committed (a read or close got there first) or rolled back
        if self._write_lock.locked():
            self._commit_now = True  # the open write commits as it ends
            return
        self._commit_batch()

    def _commit_batch(self) -> BaseException | None:
        """Commit the shared transaction; tell its writers and run its callbacks.

        Returns the error if the commit failed (its writers have been told).
        """
        batch, self._batch, self._commit_now = self._batch, None, False
        if batch is None:
            return None
        conn = self._writer
        try:
            if conn is None:
                raise StoreClosedError("the store closed before its writes were committed")
            conn.commit()
        except BaseException as exc:
            self._fail_batch(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return exc
        self._commits += 1
        checkpointer = self._checkpointer
        if self._commits >= (CHECKPOINT_EVERY if checkpointer is None else checkpointer.every):
            self._commits = 0
            self._request_checkpoint()
        for callback in batch.on_commit:
            _guarded(callback)
        if batch.done is not None and not batch.done.done():
            batch.done.set_result(None)
        return None

    def _request_checkpoint(self) -> None:
        if self._writer is None:
            return
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.path)
        self._checkpointer.request()

    def _fail_batch(self, batch: _Batch, exc: BaseException) -> None:
        conn = self._writer
        if conn is not None and conn.in_transaction:
            conn.rollback()
        for callback in batch.on_rollback:
            _guarded(callback)
        if batch.done is not None and not batch.done.done():
            batch.done.set_exception(exc)
            batch.done.exception()  # retrieved: a writer cancelled meanwhile is not told
        elif batch.released:
            logging.getLogger(__name__).error(
                "a commit of %d write(s) failed: %s", batch.released, exc
            )

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


class _Checkpointer:
    """PASSIVE checkpoints on request, in a thread with its own connection.

    sqlite3 releases the GIL while SQLite works, so the copy and its fsyncs overlap
    the event loop instead of stalling the commit that happened to cross the limit.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        self.checkpointed = threading.Event()  # set after each checkpoint (for tests)
        self.every = CHECKPOINT_EVERY  # commits between requests, adapted to what they write
        self._backfilled = 0  # WAL frames copied as of the last checkpoint
        self._thread = threading.Thread(target=self._run, name="soloops-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def close(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()

    def _adapt(self, backfilled: int) -> None:
        # Fewer frames than last time: the WAL restarted from its beginning meanwhile.
        copied = backfilled - self._backfilled if backfilled >= self._backfilled else backfilled
        self._backfilled = backfilled
        if copied > 0:
            every = self.every * CHECKPOINT_PAGES // copied
            self.every = max(16, min(4096, every))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            logging.getLogger(__name__).exception("the checkpoint thread could not open the db")
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                try:
                    with closing(conn.execute("PRAGMA wal_checkpoint(PASSIVE)")) as cursor:
                        _, _, backfilled = cursor.fetchone()
                except sqlite3.Error as exc:  # the writer's auto-checkpoint still bounds the WAL
                    logging.getLogger(__name__).warning("a WAL checkpoint failed: %s", exc)
                else:
                    self._adapt(int(backfilled))
                self.checkpointed.set()
        finally:
            conn.close()


class _Batch:
    """One SQLite transaction that the logical writes of a turn of the loop share."""

    __slots__ = ("done", "on_commit", "on_rollback", "released", "scheduled")

    def __init__(self) -> None:
        self.done: asyncio.Future[None] | None = None  # set once committed (or failed)
        self.on_commit: list[Callable[[], None]] = []
        self.on_rollback: list[Callable[[], None]] = []
        self.released = 0  # logical writes finished in it
        self.scheduled = False


class _Writing:
    """The async context of :meth:`Store.write`."""

    __slots__ = ("_batch", "_conn", "_durable", "_joined", "_store", "_tx")

    def __init__(self, store: Store, durable: bool) -> None:
        self._store = store
        self._durable = durable

    async def __aenter__(self) -> Transaction:
        store = self._store
        await store._write_lock.acquire()
        try:
            conn = store._writer
            if conn is None:
                raise StoreClosedError(
                    "the store is closed; use it inside 'async with Store.open()'"
                )
            batch = store._batch
            if batch is None:
                if len(_OPEN) > 1:
                    for other in list(_OPEN):
                        if other is not store and other.path == store.path:
                            other._settle()
                conn.execute("BEGIN IMMEDIATE").close()
                batch = store._batch = _Batch()
                self._joined = False
            else:
                # Joining writes finished earlier in this turn: undo only our own part.
                conn.execute("SAVEPOINT w").close()
                self._joined = True
        except BaseException:
            store._write_lock.release()
            raise
        self._conn = conn
        self._batch = batch
        self._tx = Transaction(conn, store._publish)
        return self._tx

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        store, conn, tx, batch = self._store, self._conn, self._tx, self._batch
        done: asyncio.Future[None] | None = None
        try:
            if exc_type is not None:
                self._undo(exc or exc_type())
                return
            if self._joined:
                try:
                    conn.execute("RELEASE w").close()
                except BaseException as error:
                    self._undo(error)
                    raise
            batch.released += 1
            batch.on_commit.extend(tx._on_commit)
            batch.on_rollback.extend(tx._on_rollback)
            for callback in tx._on_release:
                callback()
            loop = asyncio.get_running_loop()
            if store._commit_now or (self._durable and not _others_ready(loop)):
                # Nothing else can run before the commit (or one is overdue): waiting a
                # turn of the loop would share it with no one.
                failed = store._commit_batch()
                if failed is not None:
                    raise failed
                return
            if self._durable:
                if batch.done is None:
                    batch.done = loop.create_future()
                done = batch.done
            store._schedule_commit(batch)
        finally:
            store._write_lock.release()
            pending = store._batch
            if pending is not None and pending.released:
                if store._commit_now:  # came due while this write was open, which failed
                    store._commit_now = pending.scheduled = False
                store._schedule_commit(pending)
        if done is not None:
            # Shielded: a writer cancelled while waiting does not undo the shared commit.
            await asyncio.shield(done)

    def _undo(self, exc: BaseException) -> None:
        """Roll back this write alone, or the whole shared transaction if SQLite did."""
        store, conn, tx, batch = self._store, self._conn, self._tx, self._batch
        if self._joined and conn.in_transaction:
            conn.execute("ROLLBACK TO w").close()
            conn.execute("RELEASE w").close()
            for callback in tx._on_rollback:
                _guarded(callback)
            return
        # The first write of the transaction, or SQLite ended the transaction itself
        # (a full disk): everything not yet committed goes, and every writer is told.
        store._batch = None
        for callback in tx._on_rollback:
            _guarded(callback)
        store._fail_batch(batch, exc)


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks wait to run in this turn of the loop (writers that could
    share the commit). asyncio's loops keep them in ``_ready``; a loop without it is
    assumed busy, which only costs a turn of the loop per write."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _guarded(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a view's bug must not undo (or hide) a committed write
        logging.getLogger(__name__).exception("a commit callback failed")


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
    if current == 0 and _empty(conn):
        current = _create(conn)
    _upgrade(conn, current)


def _empty(conn: sqlite3.Connection) -> bool:
    with closing(conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")) as cursor:
        return cursor.fetchone() is None


def _create(conn: sqlite3.Connection) -> int:
    """A new database in one script: the schema the migrations up to ``FRESH_VERSION``
    produce (memory/fresh_schema.py, generated from them and tested to match), ~3 ms
    instead of ~10 ms of migrations that create, rebuild and drop on the way."""
    _run(conn, FRESH_SCHEMA, FRESH_VERSION, "the new database's schema")
    return FRESH_VERSION


def _upgrade(conn: sqlite3.Connection, current: int) -> None:
    """Apply the numbered migrations after ``current``, each in its own transaction."""
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _run(conn, MIGRATIONS[version - 1], version, f"migration {version}")


def _run(conn: sqlite3.Connection, script: str, version: int, what: str) -> None:
    # executescript commits implicitly, so the version bump rides inside the script.
    try:
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.rollback()
        if isinstance(exc, sqlite3.DatabaseError) and _damaged(exc):
            raise
        raise MigrationError(f"{what} failed: {exc}") from exc
