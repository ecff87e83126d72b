"""``soloops doctor`` shows the database size and how fast it grows per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.doctor import run_checks, size_line
from config import load_settings
from memory.clock import ManualClock
from memory.events import EventLog
from memory.store import Store


def test_size_line_before_a_day_of_history() -> None:
    line = size_line(2 << 20, 4096, 10, timedelta(hours=3), 10, 90)
    assert line.startswith("2.0 MB (database 2.0 MB + WAL 4.0 KB)")
    assert "growth per day not known yet" in line
    assert line.endswith("bodies kept 90 days")


def test_size_line_estimates_growth_from_the_last_seven_days() -> None:
    # 1,000 events in 1,000 KB (1 KB each); 700 of them in the last 7 days: 100 KB/day.
    line = size_line(1000 * 1024, 0, 1000, timedelta(days=30), 700, 0)
    assert "grows ~100.0 KB/day (100 events/day)" in line
    assert line.endswith("bodies kept forever")
    # A log younger than 7 days spreads its events over its own span.
    assert "(350 events/day)" in size_line(1 << 20, 0, 700, timedelta(days=2), 700, 90)


async def test_doctor_prints_the_size_line() -> None:
    settings = load_settings()  # SOLOOPS_HOME points into tmp_path (tests/conftest.py)
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    async with Store.open(settings.database_path) as store:
        events = EventLog(store, clock=clock)
        for _ in range(10):  # ten days of one event a day, the last 7 in the window
            await events.record("bench.tick", actor="test")
            clock.advance(days=1)
    checks = {check.name: check for check in await run_checks()}
    size = checks["database size"]
    assert size.level == "ok"
    assert "(database " in size.detail and "+ WAL " in size.detail
    assert "(1 events/day)" in size.detail
