"""The chain anchor beside the database (issue 10.5)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from memory.anchor import Anchor, AnchorKeeper, check_database, read_anchor, write_anchor
from memory.clock import SystemClock
from memory.errors import HistoryLostError
from memory.events import EventLog
from memory.store import Store


async def test_the_keeper_anchors_at_start_on_its_interval_and_at_stop(tmp_path: Path) -> None:
    db, head = tmp_path / "s.db", tmp_path / "s.head"
    async with Store.open(db) as store:
        events = EventLog(store)
        await events.record("one", actor="t")
        keeper = AnchorKeeper(store, head, SystemClock(), interval_s=0.01)
        await keeper.start()
        first = read_anchor(head)
        assert first is not None and first.seq == 1
        await events.record("two", actor="t")
        await asyncio.wait_for(keeper.wait_written(), timeout=30)
        second = read_anchor(head)
        assert second is not None and second.seq == 2
        await events.record("three", actor="t")
        await keeper.stop()
        last = read_anchor(head)
        assert last is not None and last.seq == 3
        assert last.hash == (await events.get(3)).hash  # type: ignore[union-attr]
    check_database(db, last)  # intact: no complaint
    assert oct(head.stat().st_mode & 0o777) == "0o600"


def test_a_database_behind_its_anchor_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.write_bytes(b"")
    with pytest.raises(HistoryLostError, match="missing or empty"):
        check_database(db, Anchor(5, "f" * 64, datetime.now(UTC)))
    check_database(db, None)  # a fresh home has no anchor


def test_an_unreadable_anchor_is_refused(tmp_path: Path) -> None:
    head = tmp_path / "s.head"
    write_anchor(head, Anchor(1, "a" * 64, datetime.now(UTC)))
    assert read_anchor(head) == Anchor(1, "a" * 64, read_anchor(head).at)  # type: ignore[union-attr]
    head.write_text("{half")
    with pytest.raises(HistoryLostError, match="unreadable"):
        read_anchor(head)
