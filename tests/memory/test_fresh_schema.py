"""A new database is created from one schema script (memory/fresh_schema.py) instead of
every migration; it must be exactly the database the migrations build, and databases
that already exist still migrate step by step."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from memory import fresh_schema, schema_gen, store
from memory.migrations import MIGRATIONS, SCHEMA_VERSION
from memory.store import Store


def _master(path: Path) -> list[tuple[object, ...]]:
    """Every ``sqlite_master`` row but the page numbers (which only say where on disk)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    return [tuple(row) for row in rows]


def _contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """The rows of every ordinary table (FTS5 keeps its settings in one of them)."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name"
            )
        ]
        return {name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall()) for name in tables}


def _version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _stepwise(path: Path) -> Path:
    """A database taken through every numbered migration, one transaction each."""
    conn = store._connect(path)
    try:
        store._upgrade(conn, 0)
    finally:
        conn.close()
    return path


def test_the_schema_file_is_what_the_migrations_generate() -> None:
    # Fails after a migration is added until `python -m memory.schema_gen` is run.
    with closing(schema_gen.migrated()) as conn:
        expected = schema_gen.render(conn, SCHEMA_VERSION)
    assert schema_gen.TARGET.read_text(encoding="utf-8") == expected, (
        "memory/fresh_schema.py is stale: run `python -m memory.schema_gen`"
    )
    assert fresh_schema.FRESH_VERSION == SCHEMA_VERSION


async def test_a_new_database_equals_one_migrated_step_by_step(tmp_path: Path) -> None:
    stepwise = _stepwise(tmp_path / "stepwise.db")
    async with Store.open(tmp_path / "new.db") as new:
        assert await new.schema_version() == SCHEMA_VERSION
        assert await new.quick_check() == "ok"
    master = _master(tmp_path / "new.db")
    assert master == _master(stepwise)
    # Not vacuous: the tables, the FTS table with its shadow tables, the triggers,
    # the named and the automatic indexes are all there.
    names = {row[1] for row in master}
    assert {"events", "outbox", "memories_fts", "memories_fts_data", "sqlite_sequence"} <= names
    assert {"memories_au", "outbox_count_au", "invoices_no_delete"} <= names
    assert any(str(name).startswith("sqlite_autoindex_") for name in names)
    assert _contents(tmp_path / "new.db") == _contents(stepwise)
    assert _version(tmp_path / "new.db") == _version(stepwise) == SCHEMA_VERSION


def test_a_new_database_runs_the_one_script_and_no_migration(tmp_path: Path) -> None:
    conn = store._connect(tmp_path / "new.db")
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    try:
        store._migrate(conn)
    finally:
        conn.close()
    # Migration 7 rebuilds memories through a memories_v5 table; the schema has none.
    assert not any("memories_v5" in sql for sql in ran)
    assert any("CREATE TABLE event_days" in sql for sql in ran)


async def test_an_existing_database_still_migrates_step_by_step(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for version, script in enumerate(MIGRATIONS[:3], start=1):
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        conn.execute(
            "INSERT INTO tasks (idempotency_key, kind, agent, lane, state, intent, created_at,"
            " updated_at) VALUES ('k', 'help', 'ops', 'l', 'succeeded', '{}', 'now', 'now')"
        )
    async with Store.open(path) as old:
        assert await old.schema_version() == SCHEMA_VERSION
        # Migration 8 counted the task that was already there.
        assert await old.scalar("SELECT n FROM state_counts WHERE tbl = 'tasks'") == 1
    assert _master(path) == _master(_stepwise(tmp_path / "stepwise.db"))


async def test_a_stale_schema_file_is_completed_by_the_later_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a branch that added a migration without regenerating the file: the new
    # database starts at the file's version and the migrations after it finish the job.
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as conn:
        for version, script in enumerate(MIGRATIONS[:-1], start=1):
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        older = "".join(f"{sql};\n" for sql in schema_gen.statements(conn))
    monkeypatch.setattr(store, "FRESH_SCHEMA", older)
    monkeypatch.setattr(store, "FRESH_VERSION", SCHEMA_VERSION - 1)
    async with Store.open(tmp_path / "new.db") as new:
        assert await new.schema_version() == SCHEMA_VERSION
    assert _master(tmp_path / "new.db") == _master(_stepwise(tmp_path / "stepwise.db"))
