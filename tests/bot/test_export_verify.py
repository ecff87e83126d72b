"""``soloops export`` and ``soloops verify`` on a home a real runtime wrote."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from bot.console import ConsoleSender
from bot.export import export_home, plan_tables
from bot.runtime import open_runtime
from bot.verify import consistent_states
from config import Settings
from memory.embedder import SentenceTransformerEmbedder
from memory.events import GENESIS, chain_hash, hash_hex
from memory.migrations import SCHEMA_VERSION
from memory.tasks import TaskState
from memory.vectorindex import VectorIndex, sidecar_path
from tests.conftest import Chat
from tests.emulators.provider import Provider


@pytest.fixture
async def home(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> Settings:
    """A home with notes, tasks, actions, a dead letter, cards and replies in it."""
    settings = Settings(home=tmp_path / "home", hooks={"crm": provider.hook()})
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        assert await runtime.memory.wait_ready()
        chat = Chat(runtime, out)
        await chat.say("/remember Acme pays invoices on the 1st")
        await chat.say("/remember Globex wants a quote by Friday")
        await chat.say("/hook crm waits for approval")  # a pending card
        await chat.say("/policy ops.hook auto")
        await chat.say("/hook crm straight through")
        provider.fail_next(1, status=400, body="no")
        await chat.say("/hook crm broken")  # a dead letter
    return settings


async def soloops(argv: list[str]) -> int:
    """The real command line, in a thread: it runs its own event loop."""
    return await asyncio.to_thread(main, argv)


def table_counts(database: Path) -> dict[str, int]:
    conn = sqlite3.connect(database)
    try:
        master = [
            (n, s or "")
            for n, s in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        ]
        tables, _ = plan_tables(master)
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_export_writes_every_row_of_every_table(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "export"
    assert await soloops(["export", str(target)]) == 0
    manifest = json.loads((target / "manifest.json").read_text())
    counts = table_counts(home.database_path)
    files = manifest["files"]
    assert {f["table"] for f in files.values()} == set(counts)  # every table, none extra
    for name, entry in files.items():
        rows = lines(target / name)
        assert len(rows) == entry["rows"] == counts[entry["table"]], name
    # the names the issue asks for, and the tables that must not be empty here
    for name in ("events", "notes", "tasks", "actions", "approvals", "outbox", "inbound"):
        assert files[f"{name}.jsonl"]["rows"] > 0, name
    assert files["notes.jsonl"]["table"] == "memories"
    assert manifest["skipped"]["memories_fts"].startswith("full-text index")
    assert "memories_fts_data" in manifest["skipped"]
    assert manifest["schema_version"] == SCHEMA_VERSION
    # the head hash, and a chain that re-checks from the exported rows alone
    events = lines(target / "events.jsonl")
    prev = GENESIS
    for e in events:
        assert e["prev_hash"] == prev
        prev = chain_hash(
            prev,
            int(str(e["seq"])),
            str(e["ts"]),
            str(e["kind"]),
            str(e["actor"]),
            str(e["subject"]),
            str(e["payload"]),
        )
        assert e["hash"] == prev
    assert manifest["event_chain"] == {"length": len(events), "head": prev}
    note = lines(target / "notes.jsonl")[0]
    assert isinstance(note["embedding"], str) and note["model_id"]
    assert "notes.jsonl" in capsys.readouterr().out


async def test_export_refuses_a_non_empty_directory_without_force(
    home: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "export"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    assert await soloops(["export", str(target)]) == 1
    assert (
        "not empty" in capsys.readouterr().err and "--force" in capsys.readouterr().err + "--force"
    )
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert await soloops(["export", str(target), "--force"]) == 0
    assert (target / "manifest.json").exists() and (target / "mine.txt").read_text() == "keep me"


async def test_export_beside_a_running_instance_reads_one_snapshot(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(home=tmp_path / "home")
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        await Chat(runtime, out).say("/help")
        result = export_home(settings.database_path, tmp_path / "live")
        assert result.rows["events.jsonl"] == await runtime.store.scalar(
            "SELECT COUNT(*) FROM events"
        )
        assert result.manifest["event_chain"]["head"] == hash_hex(
            await runtime.store.scalar("SELECT hash FROM events ORDER BY seq DESC LIMIT 1")
        )


async def test_verify_passes_on_an_intact_home(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await soloops(["verify"]) == 0
    out = capsys.readouterr().out
    assert "ok: event chain:" in out and "intact" in out
    assert "ok: memory index: 2 vectors, 2 embedded rows" in out
    assert out.rstrip().endswith("Intact.")


async def test_verify_names_a_task_edited_behind_its_back(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(home.database_path)
    with conn:
        task_id = conn.execute(
            "SELECT id FROM tasks WHERE state = 'succeeded' ORDER BY id LIMIT 1"
        ).fetchone()[0]
        conn.execute("UPDATE tasks SET state = 'failed' WHERE id = ?", (task_id,))
    conn.close()
    assert await soloops(["verify"]) == 1
    out = capsys.readouterr().out
    assert f"DISAGREES: task #{task_id} is 'failed' in the tasks table" in out
    assert "(task.succeeded) says 'succeeded'" in out
    assert "1 disagreement(s)." in out


async def test_verify_names_a_vector_missing_from_the_index(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    sidecar = json.loads(sidecar_path(home.index_path).read_text())
    index = VectorIndex(sidecar["dim"], sidecar["model_id"])
    assert index.load(home.index_path) is not None
    gone = int(sorted(index.ids())[0])
    index.remove([gone])
    index.save(home.index_path)
    assert await soloops(["verify"]) == 1
    out = capsys.readouterr().out
    assert f"DISAGREES: memory index: memories #{gone} have vectors in the table but not in" in out


async def test_verify_names_a_broken_chain(
    home: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(home.database_path)
    with conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET payload = '{}' WHERE seq = 3")
    conn.close()
    assert await soloops(["verify"]) == 1
    assert "DISAGREES: event chain: broken at event #3" in capsys.readouterr().out


def test_states_that_agree_with_a_last_event() -> None:
    assert consistent_states("task.succeeded") == {TaskState.SUCCEEDED}
    assert consistent_states("task.queued") == {TaskState.QUEUED}
    # a transient retry requeues a running task with action.retry, not a task event
    assert consistent_states("task.started") == {
        TaskState.RUNNING,
        TaskState.QUEUED,
        TaskState.WAITING_APPROVAL,
        TaskState.DEAD,
    }
    assert consistent_states("task.someday") is None


def test_full_text_tables_and_their_shadows_are_skipped() -> None:
    master = [
        ("events", "CREATE TABLE events (...)"),
        ("memories_fts", "CREATE VIRTUAL TABLE memories_fts USING fts5(text)"),
        ("memories_fts_data", "CREATE TABLE 'memories_fts_data'(...)"),
        ("memories_fts_config", "CREATE TABLE 'memories_fts_config'(...)"),
        ("sqlite_stat1", "CREATE TABLE sqlite_stat1(...)"),
        ("invoices", "CREATE TABLE invoices (...)"),
    ]
    tables, skipped = plan_tables(master)
    assert tables == ["events", "invoices"]
    assert set(skipped) == {
        "memories_fts",
        "memories_fts_data",
        "memories_fts_config",
        "sqlite_stat1",
    }
