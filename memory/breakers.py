"""Stored circuit-breaker state, one row per (connector, endpoint).

A breaker that opened stays open across a restart until its cool-down passes: the
row keeps the consecutive failures and when it opened. A closed breaker with no
failures has no row. The half-open probe is not stored: after a restart, a breaker
past its cool-down lets one probe through again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memory.clock import from_iso, to_iso
from memory.store import Store


@dataclass(frozen=True, slots=True)
class BreakerRow:
    """One endpoint's stored breaker."""

    connector: str
    endpoint: str
    failures: int
    opened_at: datetime | None


class BreakerRepo:
    """Reads and writes the ``breakers`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def all(self) -> list[BreakerRow]:
        """Every stored breaker (the ones with failures or open)."""
        rows = await self._store.fetchall(
            "SELECT connector, endpoint, failures, opened_at FROM breakers"
            " ORDER BY connector, endpoint"
        )
        return [
            BreakerRow(
                connector=row["connector"],
                endpoint=row["endpoint"],
                failures=int(row["failures"]),
                opened_at=from_iso(row["opened_at"]) if row["opened_at"] else None,
            )
            for row in rows
        ]

    async def save(self, row: BreakerRow, now: datetime) -> None:
        """Store one breaker; a closed one with no failures is removed."""
        async with self._store.write() as tx:
            if row.failures == 0 and row.opened_at is None:
                await tx.execute(
                    "DELETE FROM breakers WHERE connector = ? AND endpoint = ?",
                    (row.connector, row.endpoint),
                )
                return
            await tx.execute(
                "INSERT INTO breakers (connector, endpoint, failures, opened_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (connector, endpoint) DO UPDATE SET"
                " failures = excluded.failures, opened_at = excluded.opened_at,"
                " updated_at = excluded.updated_at",
                (
                    row.connector,
                    row.endpoint,
                    row.failures,
                    to_iso(row.opened_at) if row.opened_at else None,
                    to_iso(now),
                ),
            )
