"""Migration 13: events without a stored prev_hash, hashes as raw bytes, time filters
through ``event_days`` instead of an index on ``ts``. The chain's definition does not
change: hashes, anchors and exports written before still hold."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.export import export_home
from memory.anchor import Anchor, check_database, read_anchor, write_anchor
from memory.backup import backup_database
from memory.clock import ManualClock, to_iso
from memory.errors import HistoryLostError
from memory.events import GENESIS, EventLog, canonical, chain_hash, since_sql
from memory.migrations import MIGRATIONS
from memory.reports import read_week
from memory.store import Store

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


def _v12_database(path: Path, count: int) -> list[tuple[int, str, str]]:
    """A database at schema 12 with ``count`` events written the old way (prev_hash and
    hex hash stored), one every 3 hours from T0; returns (seq, ts, hash) per event."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:12], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
    written, prev = [], GENESIS
    for seq in range(1, count + 1):
        ts = to_iso(T0 + timedelta(hours=3 * (seq - 1)))
        payload = canonical({"n": seq})
        digest = chain_hash(prev, seq, ts, "test.old", "t", f"s{seq}", payload)
        conn.execute(
            "INSERT INTO events (seq, ts, kind, actor, subject, payload, prev_hash, hash)"
            " VALUES (?, ?, 'test.old', 't', ?, ?, ?, ?)",
            (seq, ts, f"s{seq}", payload, prev, digest),
        )
        written.append((seq, ts, digest))
        prev = digest
    conn.close()
    return written


def _tamper(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;" + sql)
    conn.close()


async def test_a_v12_database_migrates_and_its_chain_anchor_and_export_still_hold(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    written = _v12_database(db, 12)
    anchor = Anchor(12, written[-1][2], T0)
    write_anchor(tmp_path / "old.head", anchor)

    clock = ManualClock(T0 + timedelta(days=3))
    async with Store.open(db) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        columns = [r["name"] for r in await store.fetchall("PRAGMA table_info(events)")]
        assert "prev_hash" not in columns
        indexes = {r["name"] for r in await store.fetchall("PRAGMA index_list(events)")}
        assert "events_ts" not in indexes
        # Every UTC day of the old events, with the seq of its first event.
        days = [tuple(r) for r in await store.fetchall("SELECT * FROM event_days ORDER BY day")]
        assert days == [("2026-03-01", 1), ("2026-03-02", 2), ("2026-03-03", 10)]
        events = EventLog(store, clock=clock)
        report = await events.verify()
        assert report.ok and report.checked == 12
        assert [(e.seq, e.hash) for e in await events.query()] == [
            (seq, digest) for seq, _, digest in written
        ]
        check_database(db, anchor)  # the anchor written before the migration still matches

        # New events chain on from the old hex head and are stored as 32 raw bytes.
        await events.record("test.new", actor="t", payload={"n": 13})
        await events.record("test.new", actor="t", payload={"n": 14})
        stored = await store.fetchall("SELECT seq, typeof(hash) AS t FROM events WHERE seq > 11")
        assert [(r["seq"], r["t"]) for r in stored] == [(12, "text"), (13, "blob"), (14, "blob")]
        assert len(await store.scalar("SELECT hash FROM events WHERE seq = 14")) == 32
        new = await events.get(13)
        assert new is not None and new.hash == chain_hash(
            written[-1][2], 13, to_iso(clock.now()), "test.new", "t", "", canonical({"n": 13})
        )
        assert (await events.verify()).ok
        assert await store.scalar("SELECT first_seq FROM event_days WHERE day = '2026-03-04'") == 13

    # Backup anchors, export and reader still speak hex, and the chain re-checks from it.
    result = backup_database(db, tmp_path / "copy.db", T0)
    copied = read_anchor(result.anchor_path)
    last = await _last(db)
    assert copied is not None and (copied.seq, copied.hash) == last
    exported = export_home(db, tmp_path / "export")
    assert exported.manifest["event_chain"] == {"length": 14, "head": last[1]}
    rows = [json.loads(x) for x in (tmp_path / "export" / "events.jsonl").read_text().splitlines()]
    prev = GENESIS
    for row in rows:
        assert row["prev_hash"] == prev
        prev = chain_hash(
            prev, row["seq"], row["ts"], row["kind"], row["actor"], row["subject"], row["payload"]
        )
        assert row["hash"] == prev
    assert prev == last[1]
    days = [json.loads(x) for x in (tmp_path / "export" / "event_days.jsonl").read_text().split()]
    assert [d["day"] for d in days][-1] == "2026-03-04"


async def _last(db: Path) -> tuple[int, str]:
    async with Store.open(db) as store:
        [event] = await EventLog(store).query(limit=1, newest_first=True)
        return event.seq, event.hash


async def _mixed(tmp_path: Path) -> tuple[Path, list[int]]:
    """Six old-format events, then six new ones (3-4 hours apart)."""
    db = tmp_path / "mixed.db"
    _v12_database(db, 6)
    clock = ManualClock(T0 + timedelta(days=1))
    async with Store.open(db) as store:
        events = EventLog(store, clock=clock)
        for n in range(6):
            clock.advance(hours=4)
            await events.record("test.new", actor="t", payload={"n": n})
        assert (await events.verify()).ok
    return db, list(range(1, 13))


@pytest.mark.parametrize("seq", [3, 9], ids=["old row", "new row"])
async def test_verify_finds_an_edited_event_old_or_new(tmp_path: Path, seq: int) -> None:
    db, _ = await _mixed(tmp_path)
    _tamper(db, f"UPDATE events SET payload = '{{\"n\":1000}}' WHERE seq = {seq};")
    async with Store.open(db) as store:
        report = await EventLog(store).verify()
    assert (report.first_bad_seq, report.checked) == (seq, seq - 1)
    assert "changed" in report.reason


@pytest.mark.parametrize("seq", [3, 6, 9], ids=["old row", "last old row", "new row"])
async def test_verify_finds_an_event_edited_with_its_hash_at_the_next_one(
    tmp_path: Path, seq: int
) -> None:
    """A tamperer who rewrites an event and recomputes its hash breaks the next event."""
    db, _ = await _mixed(tmp_path)
    async with Store.open(db) as store:
        events = EventLog(store)
        before = await events.get(seq - 1)
        edited = await events.get(seq)
        assert before is not None and edited is not None
    forged = chain_hash(
        before.hash, seq, to_iso(edited.ts), edited.kind, edited.actor, edited.subject, '{"n":1}'
    )
    _tamper(
        db,
        f"UPDATE events SET payload = '{{\"n\":1}}', hash = '{forged}' WHERE seq = {seq};",
    )
    async with Store.open(db) as store:
        report = await EventLog(store).verify()
    assert report.first_bad_seq == seq + 1


@pytest.mark.parametrize("seq", [2, 6, 7, 10], ids=["old", "last old", "first new", "new"])
async def test_verify_finds_a_deleted_event(tmp_path: Path, seq: int) -> None:
    db, _ = await _mixed(tmp_path)
    _tamper(db, f"DELETE FROM events WHERE seq = {seq};")
    async with Store.open(db) as store:
        report = await EventLog(store).verify()
    assert report.first_bad_seq == seq
    assert "missing" in report.reason


@pytest.mark.parametrize("seq", [4, 9], ids=["among old rows", "among new rows"])
async def test_verify_finds_an_inserted_event(tmp_path: Path, seq: int) -> None:
    """Rows after the insertion point move up one; the inserted row's hash is forged
    correctly from its predecessor, so the first row that moved is the one caught."""
    db, _ = await _mixed(tmp_path)
    async with Store.open(db) as store:
        prev = await EventLog(store).get(seq - 1)
        assert prev is not None
    ts = to_iso(prev.ts)
    forged = chain_hash(prev.hash, seq, ts, "test.forged", "t", "", "{}")
    _tamper(
        db,
        f"UPDATE events SET seq = -seq WHERE seq >= {seq};"
        f"UPDATE events SET seq = 1 - seq WHERE seq < 0;"
        f"INSERT INTO events (seq, ts, kind, actor, subject, payload, hash)"
        f" VALUES ({seq}, '{ts}', 'test.forged', 't', '', '{{}}', '{forged}');",
    )
    async with Store.open(db) as store:
        assert await store.scalar("SELECT COUNT(*) FROM events") == 13
        report = await EventLog(store).verify()
    assert report.first_bad_seq == seq + 1


async def test_an_anchor_still_catches_a_replaced_database_after_migration(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    written = _v12_database(db, 3)
    async with Store.open(db):
        pass
    with pytest.raises(HistoryLostError):
        check_database(db, Anchor(3, written[1][2], T0))  # another chain's hash at #3
    check_database(db, Anchor(3, written[2][2], T0))


def _at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


# Events 1-3 on day 1, 4-5 just after midnight (day 2), then the clock is set back
# before midnight for 6-7 (day 1 again), then forward for 8 (day 2).
BACK_AFTER_MIDNIGHT = [
    _at(1, 23, 0),
    _at(1, 23, 30),
    _at(1, 23, 50),
    _at(2, 0, 5),
    _at(2, 0, 10),
    _at(1, 23, 40),
    _at(1, 23, 55),
    _at(2, 0, 20),
]
# The first event ever is after midnight; then the clock goes back: day 1's first seq
# (2) is after day 2's (1), so a filter from day 1 must start at day 2's.
BACK_BEFORE_ITS_FIRST_DAY = [_at(2, 0, 5), _at(1, 23, 50), _at(1, 23, 55), _at(2, 0, 10)]


@pytest.mark.parametrize(
    "stamps", [BACK_AFTER_MIDNIGHT, BACK_BEFORE_ITS_FIRST_DAY], ids=["back", "back first"]
)
async def test_since_is_exact_when_the_clock_went_back_across_midnight(
    tmp_path: Path, stamps: list[datetime]
) -> None:
    clock = ManualClock(stamps[0])
    async with Store.open(tmp_path / "t.db") as store:
        events = EventLog(store, clock=clock)
        for n, moment in enumerate(stamps, start=1):
            clock.set(moment)
            assert await events.record("task.succeeded", actor="t", payload={"n": n}) == n
        days = dict(tuple(r) for r in await store.fetchall("SELECT * FROM event_days"))
        assert days == {
            day: min(n for n, m in enumerate(stamps, start=1) if to_iso(m)[:10] == day)
            for day in ("2026-05-01", "2026-05-02")
        }
        probes = [*stamps, _at(1, 0, 0), _at(1, 23, 45), _at(2, 0, 0), _at(2, 0, 21), _at(3, 0, 0)]
        for since in probes:
            expected = [n for n, moment in enumerate(stamps, start=1) if moment >= since]
            got = [e.payload["n"] for e in await events.query(since=since)]
            assert got == expected, since
            sql = f"SELECT COUNT(*) FROM events WHERE {since_sql()}"
            iso = to_iso(since)
            assert await store.scalar(sql, (iso, iso)) == len(expected)
        # An upper bound too: the digest's week counts per day from the same range.
        conn = sqlite3.connect(store.path)
        try:
            week = {d.day: d.succeeded for d in read_week(conn, _at(2, 12, 0), "UTC", days=2)}
        finally:
            conn.close()
        assert week == {
            day: sum(1 for m in stamps if m.date() == day)
            for day in (_at(1, 0, 0).date(), _at(2, 0, 0).date())
        }


async def test_time_filters_ride_the_rowid(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "p.db") as store:
        plan = await store.fetchall(
            f"EXPLAIN QUERY PLAN SELECT * FROM events WHERE {since_sql()}", ("x", "x")
        )
        details = " ".join(str(r["detail"]) for r in plan)
        assert "USING INTEGER PRIMARY KEY (rowid>?)" in details
        assert "SCAN events" not in details
