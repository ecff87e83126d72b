from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memory.errors import MigrationError, StoreClosedError
from memory.migrations import MIGRATIONS, SCHEMA_VERSION
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
            "INSERT INTO memories (namespace, tier, text, source_key, created_at, last_used_at)"
            " VALUES ('n', 'durable', 'kept', 'k', 'now', 'now')"
        )
    async with Store.open(path) as store:
        assert await store.scalar("SELECT text FROM memories") == "kept"
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
                "INSERT INTO memories (namespace, tier, text, source_key, created_at, last_used_at)"
                " VALUES ('n', 'durable', 'x', 'k', 'now', 'now')"
            )
            raise RuntimeError("boom")
    assert await store.scalar("SELECT COUNT(*) FROM memories") == 0


async def test_reads_see_only_committed_state(store: Store) -> None:
    async with store.write() as tx:
        await tx.execute(
            "INSERT INTO memories (namespace, tier, text, source_key, created_at, last_used_at)"
            " VALUES ('n', 'durable', 'x', 'k', 'n', 'n')"
        )
        assert await store.scalar("SELECT COUNT(*) FROM memories") == 0
        assert (await tx.fetchone("SELECT COUNT(*) AS n FROM memories"))["n"] == 1  # type: ignore[index]
    assert await store.scalar("SELECT COUNT(*) FROM memories") == 1


async def test_closed_store_says_how_to_use_it(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "a.db") as store:
        pass
    with pytest.raises(StoreClosedError, match="async with"):
        await store.scalar("SELECT 1")


async def test_notes_of_schema_1_become_durable_memories_with_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO notes (id, text, source_key, created_at)"
            " VALUES (12, 'Acme pays on the 1st', 'console:m1', '2026-01-02T03:04:05.000000Z')"
        )
        conn.execute("PRAGMA user_version = 1")
    async with Store.open(path) as store:
        row = await store.fetchone("SELECT * FROM memories")
        assert row is not None
        assert (row["id"], row["namespace"], row["tier"], row["text"]) == (
            12,
            "notes",
            "durable",
            "Acme pays on the 1st",
        )
        assert row["embedding"] is None  # embedded when the model first loads
        found = await store.fetchall(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'acme'"
        )
        assert [r[0] for r in found] == [12]
        assert await store.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'notes'") == 0
