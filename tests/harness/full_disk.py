"""A real SQLITE_FULL without root or a tmpfs: cap the database file's size.

``PRAGMA max_page_count`` holds for the connection it is set on, so it is set through
the store's own writer; then a filler table takes every page left under the cap, so
any write that needs a new page fails with "database or disk is full", exactly as
on a full disk. :func:`make_room` lifts the cap and drops the filler.
"""

from __future__ import annotations

import sqlite3

from memory.store import Store

NO_CAP = 1_073_741_823  # SQLite's largest max_page_count


async def fill_up(store: Store) -> None:
    """Make the database full: no write that needs a new page succeeds."""
    async with store.write() as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS test_filler (pad BLOB)")
        row = await tx.fetchone("PRAGMA page_count")
        assert row is not None
        await tx.execute(f"PRAGMA max_page_count = {int(row[0]) + 1}")
    for size in (65536, 4096, 512, 64):  # big pieces first, then the crumbs
        while True:
            try:
                async with store.write() as tx:
                    await tx.execute("INSERT INTO test_filler VALUES (randomblob(?))", (size,))
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):
                    raise
                break


async def make_room(store: Store) -> None:
    """Space returns."""
    async with store.write() as tx:
        await tx.execute(f"PRAGMA max_page_count = {NO_CAP}")
        await tx.execute("DROP TABLE test_filler")
