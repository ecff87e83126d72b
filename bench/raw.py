"""References: raw stdlib ``sqlite3`` on the same disk, in the same durability mode."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

# About the size of one event row (kind, actor, a small JSON payload, two hashes).
ROW = ("message.received", "console:op", '{"chars":5,"platform":"console"}', "0" * 64, "f" * 64)


def _open(path: Path, synchronous: str) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL").close()
    conn.execute(f"PRAGMA synchronous={synchronous}").close()
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT, actor TEXT, payload TEXT,"
        " prev_hash TEXT, hash TEXT)"
    ).close()
    return conn


def commit_latencies(path: Path, n: int, synchronous: str = "NORMAL") -> list[float]:
    """Seconds of each of ``n`` single-row commits (BEGIN, INSERT, COMMIT)."""
    samples: list[float] = []
    with closing(_open(path, synchronous)) as conn:
        for _ in range(min(50, n)):  # warm the page cache and the WAL
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (NULL, ?, ?, ?, ?, ?)", ROW).close()
            conn.execute("COMMIT")
        for _ in range(n):
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (NULL, ?, ?, ?, ?, ?)", ROW).close()
            conn.execute("COMMIT")
            samples.append(time.perf_counter() - began)
    return samples


def commits_per_s(path: Path, n: int, synchronous: str = "NORMAL") -> float:
    """Rows per second, one commit per row."""
    samples = commit_latencies(path, n, synchronous)
    return n / sum(samples)


def executemany_per_s(path: Path, n: int) -> float:
    """Rows per second, ``executemany`` of ``n`` rows in one transaction."""
    rows = [ROW] * n
    with closing(_open(path, "NORMAL")) as conn:
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t VALUES (NULL, ?, ?, ?, ?, ?)", rows).close()
        conn.execute("COMMIT")
        return n / (time.perf_counter() - began)
