from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memory.errors import MigrationError, StoreClosedError
from memory.migrations import SCHEMA_VERSION
from memory.store import Store


async def test_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        assert await store.schema_version() == SCHEMA_VERSION
        assert await store.scalar("PRAGMA journal_mode") == "wal"
        assert await store.quick_check() == "ok"


async def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Store.open(path) as store, store.write() as tx:
        await tx.execute(
            "INSERT INTO notes (text, source_key, created_at) VALUES ('kept', 'k', 'now')"
        )
    async with Store.open(path) as store:
        assert await store.scalar("SELECT text FROM notes") == "kept"
        assert await store.schema_version() == SCHEMA_VERSION


async def test_a_newer_database_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(MigrationError, match="newer than this soloops"):
        async with Store.open(path):
            pass


async def test_failed_write_rolls_back_everything(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.execute(
                "INSERT INTO notes (text, source_key, created_at) VALUES ('x', 'k', 'now')"
            )
            raise RuntimeError("boom")
    assert await store.scalar("SELECT COUNT(*) FROM notes") == 0


async def test_reads_see_only_committed_state(store: Store) -> None:
    async with store.write() as tx:
        await tx.execute("INSERT INTO notes (text, source_key, created_at) VALUES ('x', 'k', 'n')")
        assert await store.scalar("SELECT COUNT(*) FROM notes") == 0
        assert (await tx.fetchone("SELECT COUNT(*) AS n FROM notes"))["n"] == 1  # type: ignore[index]
    assert await store.scalar("SELECT COUNT(*) FROM notes") == 1


async def test_closed_store_says_how_to_use_it(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        pass
    with pytest.raises(StoreClosedError, match="async with"):
        await store.scalar("SELECT 1")
