"""Group commit: writes that finish in the same turn of the loop share one SQLite commit,
and a durable write still returns only once its commit is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from memory.events import EventLog
from memory.store import Store


def count_commits(store: Store) -> list[str]:
    """Every COMMIT the writer connection runs, recorded as it runs."""
    seen: list[str] = []
    writer = store._writer
    assert writer is not None

    def trace(statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT"):
            seen.append(statement)

    writer.set_trace_callback(trace)
    return seen


def on_disk(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What a separate connection (another process, a restart) reads from the file."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def insert(store: Store, text: str, *, durable: bool = True) -> list[tuple[object, ...]]:
    async with store.write(durable=durable) as tx:
        await tx.execute(
            "INSERT INTO memories (namespace, tier, text, source_key, created_at, last_used_at)"
            " VALUES ('n', 'durable', ?, ?, 'now', 'now')",
            (text, text),
        )
    return on_disk(store.path, f"SELECT text FROM memories WHERE text = '{text}'")


async def test_concurrent_writers_share_one_commit_and_each_returns_after_it(
    store: Store,
) -> None:
    commits = count_commits(store)
    seen_on_return = await asyncio.gather(*(insert(store, f"w{i}") for i in range(8)))
    # Every writer, the moment its write returned, could read it from the file.
    assert seen_on_return == [[(f"w{i}",)] for i in range(8)]
    assert len(commits) < 8  # shared: one commit here, fewer than one per writer anyway
    assert len(commits) == 1


async def test_a_lone_writer_commits_at_once(store: Store) -> None:
    commits = count_commits(store)
    for i in range(3):
        assert await insert(store, f"solo{i}") == [(f"solo{i}",)]
    assert len(commits) == 3


async def test_a_failing_write_undoes_only_itself_in_a_shared_commit(store: Store) -> None:
    async def failing() -> None:
        async with store.write() as tx:
            await tx.execute(
                "INSERT INTO memories (namespace, tier, text, source_key, created_at,"
                " last_used_at) VALUES ('n', 'durable', 'bad', 'bad', 'now', 'now')"
            )
            raise RuntimeError("the agent failed")

    results = await asyncio.gather(
        insert(store, "a"), failing(), insert(store, "b"), return_exceptions=True
    )
    assert results[0] == [("a",)] and results[2] == [("b",)]
    assert isinstance(results[1], RuntimeError)
    assert on_disk(store.path, "SELECT text FROM memories ORDER BY id") == [("a",), ("b",)]


async def test_callbacks_run_after_the_commit_and_a_failed_commit_tells_every_writer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    async def write(name: str) -> None:
        async with store.write() as tx:
            await tx.execute(
                "INSERT INTO memories (namespace, tier, text, source_key, created_at,"
                " last_used_at) VALUES ('n', 'durable', ?, ?, 'now', 'now')",
                (name, name),
            )
            tx.on_commit(lambda: events.append(f"committed {name}"))
            tx.on_rollback(lambda: events.append(f"rolled back {name}"))
        events.append(f"returned {name}")

    await asyncio.gather(write("a"), write("b"))
    assert sorted(events[:2]) == ["committed a", "committed b"]  # before either returned
    assert sorted(events[2:]) == ["returned a", "returned b"]

    events.clear()
    writer = store._writer
    assert writer is not None

    class Refusing:
        """The writer connection, whose commit fails (a full disk, say)."""

        def __getattr__(self, name: str) -> object:
            return getattr(writer, name)

        def commit(self) -> None:
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_writer", Refusing())
    results = await asyncio.gather(write("c"), write("d"), return_exceptions=True)
    monkeypatch.setattr(store, "_writer", writer)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert sorted(events) == ["rolled back c", "rolled back d"]
    assert on_disk(store.path, "SELECT text FROM memories ORDER BY id") == [("a",), ("b",)]
    assert await insert(store, "e") == [("e",)]  # the store goes on


async def test_a_write_not_waited_for_is_read_back_and_committed_within_the_turn(
    store: Store,
) -> None:
    assert await insert(store, "quick", durable=False) == []  # returned before its commit
    assert await store.scalar("SELECT text FROM memories") == "quick"  # a read commits first
    assert on_disk(store.path, "SELECT text FROM memories") == [("quick",)]
    await insert(store, "later", durable=False)
    done = asyncio.Event()
    asyncio.get_running_loop().call_soon(done.set)
    await done.wait()  # one turn of the loop, nothing read
    assert on_disk(store.path, "SELECT COUNT(*) FROM memories") == [(2,)]


async def test_the_chain_holds_across_writers_sharing_commits(store: Store) -> None:
    log = EventLog(store)
    commits = count_commits(store)

    async def writer(i: int) -> None:
        for n in range(25):
            await log.record("bench.event", actor=f"w{i}", payload={"n": n})

    await asyncio.gather(*(writer(i) for i in range(8)))
    assert len(commits) < 200  # shared commits
    report = await log.verify()
    assert report.ok and report.checked == 200
    seqs = [row[0] for row in on_disk(store.path, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 201))


async def test_a_second_store_on_the_same_file_does_not_wait_for_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    async with Store.open(path) as one, Store.open(path) as two:
        stores = [one, two]
        await asyncio.gather(*(insert(stores[i % 2], f"s{i}") for i in range(6)))
        assert on_disk(path, "SELECT COUNT(*) FROM memories") == [(6,)]


async def test_a_write_open_across_a_turn_that_fails_still_lets_the_others_commit(
    store: Store,
) -> None:
    inside = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_failing() -> None:
        async with store.write() as tx:
            await tx.execute(
                "INSERT INTO memories (namespace, tier, text, source_key, created_at,"
                " last_used_at) VALUES ('n', 'durable', 'slow', 'slow', 'now', 'now')"
            )
            inside.set()
            await go_on.wait()  # the commit of the first write comes due meanwhile
            raise RuntimeError("gave up")

    first = asyncio.create_task(insert(store, "first"))
    slow = asyncio.create_task(slow_failing())
    await inside.wait()
    go_on.set()
    with pytest.raises(RuntimeError, match="gave up"):
        await slow
    assert await asyncio.wait_for(first, 10) == [("first",)]
    assert on_disk(store.path, "SELECT text FROM memories") == [("first",)]
