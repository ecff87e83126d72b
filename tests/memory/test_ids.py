"""Ids an operator types are never reused (issue 10.6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memory.migrations import MIGRATIONS, SCHEMA_VERSION
from memory.store import Store
from tests.conftest import Chat

# The schema version before memory ids became AUTOINCREMENT.
BEFORE = 4


async def test_a_forgotten_newest_note_keeps_its_id(chat: Chat) -> None:
    for n, text in enumerate(("alpha", "beta", "gamma"), start=1):
        assert await chat.say(f"/remember {text}") == f"Remembered #{n}.\n"
    assert await chat.say("/forget 3") == "Forgot #3.\n"
    assert await chat.say("/remember delta") == "Remembered #4.\n"
    assert "There is no note #3" in await chat.say("/forget 3")


def _old_database(path: Path) -> None:
    """A database at schema 4 with memories (one of them forgotten), tasks and events."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(1, BEFORE + 1):
        conn.executescript(
            f"BEGIN;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};\nCOMMIT;"
        )
    conn.executemany(
        "INSERT INTO memories (id, namespace, tier, text, source_key, source_event, created_at,"
        " last_used_at, expires_at, model_id, embedding)"
        " VALUES (?, 'notes', 'durable', ?, ?, ?, 't', 't', NULL, ?, ?)",
        [
            (1, "acme pays on the first", "k1", 7, "m", b"\x00\x01"),
            (2, "bob prefers email", "k2", 8, None, None),
            (3, "carol is on leave", "k3", 9, None, None),
        ],
    )
    conn.execute(
        "INSERT INTO events (seq, ts, kind, actor, subject, payload, prev_hash, hash)"
        " VALUES (1, 't', 'k', 'a', 's', '{}', 'p', 'h')"
    )
    conn.execute(
        "INSERT INTO tasks (idempotency_key, kind, agent, lane, state, intent, created_at,"
        " updated_at) VALUES ('i', 'remember', 'notes', 'l', 'succeeded', '{}', 't', 't')"
    )
    conn.close()


async def test_upgrade_keeps_every_row_and_search(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    before = sqlite3.connect(path)
    rows_before = before.execute("SELECT * FROM memories ORDER BY id").fetchall()
    tables = ("events", "tasks", "memories")
    counts_before = {t: before.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    before.close()
    async with Store.open(path) as store:
        assert await store.schema_version() == SCHEMA_VERSION > BEFORE
        rows_after = [tuple(r) for r in await store.fetchall("SELECT * FROM memories ORDER BY id")]
        assert rows_after == rows_before
        for table, count in counts_before.items():
            assert await store.scalar(f"SELECT COUNT(*) FROM {table}") == count
        found = await store.fetchall(
            "SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'bob'"
        )
        assert [r[0] for r in found] == [2]
        assert "AUTOINCREMENT" in await store.scalar(
            "SELECT sql FROM sqlite_master WHERE name = 'memories'"
        )
        async with store.write() as tx:
            await tx.execute("DELETE FROM memories WHERE id = 3")
            new_id = await tx.execute(
                "INSERT INTO memories (namespace, tier, text, source_key, created_at,"
                " last_used_at) VALUES ('notes', 'durable', 'dave', 'k4', 't', 't')"
            )
        assert new_id == 4
        assert (
            await store.scalar("SELECT rowid FROM memories_fts WHERE memories_fts MATCH 'carol'")
            is None
        )
        assert await store.scalar("PRAGMA integrity_check") == "ok"
