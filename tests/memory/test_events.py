from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from memory.clock import to_iso
from memory.events import GENESIS, EventLog, canonical, chain_hash
from memory.redact import REDACTED, Redactor
from memory.store import Store


async def test_events_chain_and_verify(events: EventLog) -> None:
    for n in range(5):
        await events.record("test.thing", actor="t", subject=f"s{n}", payload={"n": n})
    report = await events.verify()
    assert report.ok
    assert report.checked == 5
    stored = await events.query()
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    first = stored[0]
    assert first.hash == chain_hash(
        GENESIS,
        1,
        to_iso(first.ts),
        first.kind,
        first.actor,
        first.subject,
        canonical(first.payload),
    )
    assert all(
        b.hash
        == chain_hash(a.hash, b.seq, to_iso(b.ts), b.kind, b.actor, b.subject, canonical(b.payload))
        for a, b in itertools.pairwise(stored)
    )


async def test_the_log_refuses_updates_and_deletes(store: Store, events: EventLog) -> None:
    await events.record("test.thing", actor="t")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with store.write() as tx:
            await tx.execute("UPDATE events SET kind = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with store.write() as tx:
            await tx.execute("DELETE FROM events")


def _tamper(path: str, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;" + sql)
    conn.close()


async def test_an_edited_event_is_detected(store: Store, events: EventLog) -> None:
    for n in range(4):
        await events.record("test.thing", actor="t", payload={"amount": n})
    _tamper(str(store.path), "UPDATE events SET payload = '{\"amount\":1000}' WHERE seq = 3;")
    report = await events.verify()
    assert not report.ok
    assert report.first_bad_seq == 3
    assert "changed" in report.reason
    assert report.checked == 2


async def test_a_deleted_event_is_detected(store: Store, events: EventLog) -> None:
    for _ in range(4):
        await events.record("test.thing", actor="t")
    _tamper(str(store.path), "DELETE FROM events WHERE seq = 2;")
    report = await events.verify()
    assert report.first_bad_seq == 2
    assert "missing" in report.reason


async def test_payloads_are_redacted(store: Store) -> None:
    log = EventLog(store, Redactor(["s3cr3t-token-value"]))
    await log.record(
        "test.secret",
        actor="t",
        subject="uses s3cr3t-token-value",
        payload={"api_token": "anything", "note": "key is s3cr3t-token-value ok", "n": [1]},
    )
    [event] = await log.query()
    assert event.payload == {"api_token": REDACTED, "note": f"key is {REDACTED} ok", "n": [1]}
    assert event.subject == f"uses {REDACTED}"
    raw = await store.scalar("SELECT payload || subject FROM events")
    assert "s3cr3t" not in raw


async def test_query_filters(events: EventLog) -> None:
    await events.record("task.queued", actor="t")
    await events.record("task.failed", actor="t")
    await events.record("taskforce.x", actor="t")
    await events.record("note.created", actor="t")
    assert [e.kind for e in await events.query(kind="task")] == ["task.queued", "task.failed"]
    assert [e.kind for e in await events.query(kind="task.failed")] == ["task.failed"]
    assert [e.seq for e in await events.query(limit=2)] == [3, 4]
    future = datetime.now(UTC) + timedelta(minutes=1)
    assert await events.query(since=future) == []
    assert len(await events.query(since=datetime.now(UTC) - timedelta(hours=1))) == 4


def test_canonical_is_the_same_text_json_dumps_writes() -> None:
    """The hash covers this text: the fast encoder must write exactly what the stdlib
    encoder with the same options writes (old events re-verify against it)."""
    payloads: list[dict[str, object]] = [
        {},
        {"b": 1, "a": [1, 2.5, None, True, False], "c": {"z": "ü", "y": '\u2028 \\ " \n'}},
        {"n": 1e300, "m": -0.0, "big": 10**30, "neg": -17, "tiny": 5e-324},
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "kinds": ("x", "y")},
        {"emoji": "\U0001f600", "nested": [{"b": 2, "a": 1}], "1": "one", "10": "ten"},
    ]
    for payload in payloads:
        expected = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
        )
        assert canonical(payload) == expected
