"""``soloops export <dir>``: every table as JSON Lines, with a manifest. The data is the
operator's and must leave with them.

Tables are discovered from ``sqlite_master`` (so every feature's tables come along
without this module knowing them); full-text indexes and their shadow tables are
skipped, and the manifest says so (they are rebuilt from their content tables).
File names are the table names, except ``memories`` -> ``notes.jsonl``. Values are
exported as stored: JSON columns stay JSON text (so an event's ``payload`` is exactly
what its hash covers and the chain can be re-checked from the export), BLOBs (the
memory vectors) are base64. The one exception is the chain itself: an event's ``hash``
is written as hex and its ``prev_hash`` beside it, as before migration 13 stopped
storing them that way.

The whole export reads one snapshot (:func:`memory.snapshot.read_snapshot`), so it is
consistent and safe beside a running soloops. ``manifest.json`` is written last: an
export without one is incomplete.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config import Settings
from memory.clock import to_iso
from memory.errors import SnapshotError
from memory.events import GENESIS, hash_hex
from memory.reports import read_chain_head
from memory.snapshot import read_snapshot

FORMAT = "soloops-export/1"
FILE_NAMES = {"memories": "notes.jsonl"}
FTS_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")


class ExportError(Exception):
    """The export cannot be written; ``str()`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: rows per file, tables skipped, and the manifest."""

    directory: Path
    rows: dict[str, int]
    skipped: dict[str, str]
    manifest: dict[str, Any]


def plan_tables(master: list[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """Which tables to export and which to skip (with why), from ``(name, sql)`` rows."""
    virtual = {name for name, sql in master if sql.upper().startswith("CREATE VIRTUAL TABLE")}
    shadows = {f"{v}{suffix}" for v in virtual for suffix in FTS_SHADOWS}
    export, skipped = [], {}
    for name, _ in sorted(master):
        if name in virtual:
            skipped[name] = "full-text index; rebuilt from its content table"
        elif name in shadows:
            skipped[name] = "internal table of a full-text index"
        elif name.startswith("sqlite_"):
            skipped[name] = "SQLite's own bookkeeping"
        else:
            export.append(name)
    return export, skipped


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _write_table(conn: sqlite3.Connection, table: str, target: Path) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    try:
        cursor = conn.execute(f"SELECT * FROM {quoted} ORDER BY rowid")
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: its primary key orders it
        cursor = conn.execute(f"SELECT * FROM {quoted}")
    columns = [d[0] for d in cursor.description]
    rows: Iterable[dict[str, Any]] = (dict(zip(columns, row, strict=True)) for row in cursor)
    if table == "events":
        rows = _chained(rows)
    count = 0
    with target.open("w", encoding="utf-8") as out:
        for row in rows:
            record = {c: _value(v) for c, v in row.items()}
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def _chained(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Events as exports have always shown them: hex hashes, each row with its
    ``prev_hash`` (the database stores neither form since migration 13)."""
    prev = GENESIS
    for row in rows:
        record = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
        record["prev_hash"] = prev
        record["hash"] = prev = hash_hex(row["hash"])
        yield record


def export_home(
    database: Path, directory: Path, *, force: bool = False, now: datetime | None = None
) -> ExportResult:
    """Write every table of ``database`` into ``directory`` as JSON Lines, plus a manifest.

    Raises:
        ExportError: ``directory`` is not empty (and ``force`` is not set) or is a file.
        memory.errors.SnapshotError: there is no readable database.
    """
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"{directory} is a file; name a directory to export into")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ExportError(
            f"{directory} is not empty; choose an empty directory, or add --force to"
            " overwrite the export files in it"
        )
    with read_snapshot(database) as conn:
        master = [
            (str(r[0]), str(r[1] or ""))
            for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        ]
        tables, skipped = plan_tables(master)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        length, head = read_chain_head(conn)
        directory.mkdir(parents=True, exist_ok=True)
        manifest_path = directory / "manifest.json"
        manifest_path.unlink(missing_ok=True)  # no manifest until this export is complete
        rows: dict[str, int] = {}
        files: dict[str, dict[str, Any]] = {}
        for table in tables:
            name = FILE_NAMES.get(table, f"{table}.jsonl")
            rows[name] = _write_table(conn, table, directory / name)
            files[name] = {"table": table, "rows": rows[name]}
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": to_iso(now or datetime.now(UTC)),
        "schema_version": version,
        "event_chain": {"length": length, "head": head},
        "files": files,
        "skipped": skipped,
        "values": "as stored; JSON columns are JSON text, BLOB columns are base64",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportResult(directory, rows, skipped, manifest)


def run_export(settings: Settings, directory: str, *, force: bool = False) -> int:
    """``soloops export``: print what was written; 0 on success, 1 with the reason."""
    try:
        result = export_home(settings.database_path, Path(directory), force=force)
    except (ExportError, SnapshotError) as exc:
        print(f"soloops: {exc}", file=sys.stderr)
        return 1
    for name, count in result.rows.items():
        print(f"{name}\t{count} rows")
    for table, why in result.skipped.items():
        print(f"skipped {table}: {why}")
    head = result.manifest["event_chain"]["head"]
    print(f"manifest.json: event chain head {head or '(no events)'}")
    return 0
