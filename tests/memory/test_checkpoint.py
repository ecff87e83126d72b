"""Checkpoints off the serving path: a thread copies the WAL into the database file."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from memory.store import CHECKPOINT_EVERY, WAL_LIMIT_PAGES, Store


async def _commits(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        async with store.write() as tx:
            await tx.execute(
                "INSERT INTO policy_overrides (key, rule, updated_by, updated_at)"
                " VALUES (?, 'r', 'u', 't')",
                (f"k{i}",),
            )


async def test_the_thread_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "s.db") as store:
        await _commits(store, CHECKPOINT_EVERY)
        checkpointer = store._checkpointer
        assert checkpointer is not None  # asked for once the commits added up
        assert await asyncio.to_thread(checkpointer.checkpointed.wait, 60.0)
        # The database file alone (no WAL beside it) holds what was committed.
        shutil.copyfile(tmp_path / "s.db", tmp_path / "alone.db")
        with closing(sqlite3.connect(tmp_path / "alone.db")) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM policy_overrides").fetchone()
        assert count == CHECKPOINT_EVERY
    assert not checkpointer.alive  # closed with the store


async def test_the_writer_still_bounds_the_wal(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "s.db") as store:
        limit = store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[union-attr]  # open
        assert limit == WAL_LIMIT_PAGES


async def test_a_short_run_starts_no_thread(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "s.db") as store:
        await _commits(store, CHECKPOINT_EVERY - 1)
        assert store._checkpointer is None


async def test_data_version_moves_only_with_other_connections(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "s.db") as store:
        before = store.data_version()
        await _commits(store, 3)
        assert store.data_version() == before  # its own commits
        async with Store.open(tmp_path / "s.db") as other:
            await _commits(other, 1, start=100)
        assert store.data_version() != before
