"""The ``memories`` table: the source of truth of semantic memory.

Rows hold the text, its namespace (the owning agent) and tier, where it came from,
when it was made and last used, when it expires, and its embedding with the id of the
model that made it. The FAISS index is rebuilt from these rows whenever it is missing
or stale. This module only reads and writes rows; :mod:`memory.semantic` decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from memory.clock import from_iso, to_iso
from memory.fts import fts_query
from memory.store import Store, Transaction

if TYPE_CHECKING:  # numpy loads with the first vector, not at start-up
    import numpy as np

_COLUMNS = (
    "id, namespace, tier, text, source_key, source_event, created_at, last_used_at, expires_at"
)


class Tier(StrEnum):
    """How long a memory lives."""

    EPHEMERAL = "ephemeral"  # recent turns of a conversation, in process only
    WORKING = "working"  # expires after a TTL, refreshed when used
    DURABLE = "durable"  # kept until forgotten


@dataclass(frozen=True, slots=True)
class Memory:
    """One stored memory (without its vector)."""

    id: int
    namespace: str
    tier: Tier
    text: str
    source_key: str
    source_event: int | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A row to insert."""

    namespace: str
    tier: Tier
    text: str
    source_key: str
    expires_at: datetime | None = None


def _memory(row: Any) -> Memory:
    return Memory(
        id=int(row["id"]),
        namespace=row["namespace"],
        tier=Tier(row["tier"]),
        text=row["text"],
        source_key=row["source_key"],
        source_event=row["source_event"],
        created_at=from_iso(row["created_at"]),
        last_used_at=from_iso(row["last_used_at"]),
        expires_at=from_iso(row["expires_at"]) if row["expires_at"] else None,
    )


def _in(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


class MemoryRepo:
    """Queries and writes over ``memories``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def insert_many(
        self,
        tx: Transaction,
        rows: Sequence[NewMemory],
        *,
        now: datetime,
        model_id: str | None,
        vectors: np.ndarray | None,
    ) -> list[tuple[Memory, bool]]:
        """Insert rows once per ``source_key``; return each row and whether it is new.

        Ids are assigned here (the single writer makes this safe) so a whole batch is one
        ``executemany``: one past the highest id ever used (``sqlite_sequence`` remembers
        deleted ones), so a forgotten memory's id is never given to another.
        """
        keys = [row.source_key for row in rows]
        existing: dict[str, Memory] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found = await tx.fetchall(
                f"SELECT {_COLUMNS} FROM memories WHERE source_key IN ({_in(chunk)})", chunk
            )
            existing.update((r["source_key"], _memory(r)) for r in found)
        last = await tx.fetchone(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM memories), 0),"
            " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'memories'), 0)) AS m"
        )
        next_id = int(last["m"]) + 1 if last else 1
        stamp = to_iso(now)
        params: list[tuple[object, ...]] = []
        out: list[tuple[Memory, bool]] = []
        fresh: dict[str, Memory] = {}
        for i, row in enumerate(rows):
            known = existing.get(row.source_key) or fresh.get(row.source_key)
            if known is not None:
                out.append((known, False))
                continue
            blob = vectors[i].astype("float32").tobytes() if vectors is not None else None
            expires = to_iso(row.expires_at) if row.expires_at else None
            model = model_id if blob is not None else None
            params.append(
                (
                    next_id,
                    row.namespace,
                    row.tier.value,
                    row.text,
                    row.source_key,
                    stamp,
                    stamp,
                    expires,
                    model,
                    blob,
                )
            )
            memory = Memory(
                next_id, row.namespace, row.tier, row.text, row.source_key, None, now, now,
                row.expires_at,
            )  # fmt: skip
            fresh[row.source_key] = memory
            out.append((memory, True))
            next_id += 1
        if params:
            await tx.executemany(
                "INSERT INTO memories (id, namespace, tier, text, source_key, created_at,"
                " last_used_at, expires_at, model_id, embedding)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        return out

    async def set_source_events(self, tx: Transaction, pairs: Iterable[tuple[int, int]]) -> None:
        """Link rows to the events that recorded their writes: ``(id, seq)`` pairs."""
        await tx.executemany(
            "UPDATE memories SET source_event = ? WHERE id = ?", [(s, i) for i, s in pairs]
        )

    async def get(self, memory_id: int, tx: Transaction | None = None) -> Memory | None:
        """The memory with this id, if any."""
        sql, params = f"SELECT {_COLUMNS} FROM memories WHERE id = ?", (memory_id,)
        row = await (tx.fetchone(sql, params) if tx else self._store.fetchone(sql, params))
        return None if row is None else _memory(row)

    async def live(
        self, ids: Sequence[int], namespaces: Sequence[str], now: datetime
    ) -> dict[int, Memory]:
        """Of ``ids``, those in ``namespaces`` that have not expired."""
        if not ids or not namespaces:
            return {}
        rows = await self._store.fetchall(
            # The unary + keeps SQLite on the primary key: with the namespace index it
            # would scan the whole namespace (1.5 ms at 10k rows instead of 0.2 ms).
            f"SELECT {_COLUMNS} FROM memories WHERE id IN ({_in(ids)})"
            f" AND +namespace IN ({_in(namespaces)}) AND (expires_at IS NULL OR expires_at > ?)",
            [*ids, *namespaces, to_iso(now)],
        )
        return {int(r["id"]): _memory(r) for r in rows}

    async def delete(self, tx: Transaction, memory_id: int) -> None:
        """Delete one row."""
        await tx.execute("DELETE FROM memories WHERE id = ?", (memory_id,))

    async def touch(
        self, tx: Transaction, ids: Sequence[int], now: datetime, expires_at: datetime
    ) -> None:
        """Mark working memories used now and push their expiry out."""
        await tx.execute(
            f"UPDATE memories SET last_used_at = ?, expires_at = ? WHERE id IN ({_in(ids)})"
            " AND tier = 'working'",
            [to_iso(now), to_iso(expires_at), *ids],
        )

    async def expired(self, tx: Transaction, now: datetime, limit: int = 1000) -> list[Memory]:
        """Rows whose time is up, oldest expiry first."""
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?"
            " ORDER BY expires_at LIMIT ?",
            (to_iso(now), limit),
        )
        return [_memory(r) for r in rows]

    async def latest(self, namespace: str, now: datetime, limit: int = 10) -> list[Memory]:
        """The newest live memories of a namespace, newest first."""
        rows = await self._store.fetchall(
            f"SELECT {_COLUMNS} FROM memories WHERE namespace = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC LIMIT ?",
            (namespace, to_iso(now), limit),
        )
        return [_memory(r) for r in rows]

    async def count(self, namespace: str | None = None) -> int:
        """How many memories are stored (in one namespace, or all)."""
        if namespace is None:
            return int(await self._store.scalar("SELECT COUNT(*) FROM memories"))
        return int(
            await self._store.scalar(
                "SELECT COUNT(*) FROM memories WHERE namespace = ?", (namespace,)
            )
        )

    async def embedded_stats(self, model_id: str) -> tuple[int, int, int]:
        """Count, max id and id sum of the rows embedded with ``model_id``."""
        row = await self._store.fetchone(
            "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS mx, COALESCE(SUM(id), 0) AS total"
            " FROM memories WHERE model_id = ?",
            (model_id,),
        )
        assert row is not None
        return int(row["n"]), int(row["mx"]), int(row["total"])

    async def unembedded(self, model_id: str, limit: int = 256) -> list[tuple[int, str]]:
        """``(id, text)`` of rows with no vector from ``model_id`` yet."""
        rows = await self._store.fetchall(
            "SELECT id, text FROM memories WHERE model_id IS NULL OR model_id != ?"
            " ORDER BY id LIMIT ?",
            (model_id, limit),
        )
        return [(int(r["id"]), r["text"]) for r in rows]

    async def set_embeddings(
        self, tx: Transaction, ids: Sequence[int], vectors: np.ndarray, model_id: str
    ) -> None:
        """Store vectors made by ``model_id`` for existing rows."""
        await tx.executemany(
            "UPDATE memories SET embedding = ?, model_id = ? WHERE id = ?",
            [(vectors[i].astype("float32").tobytes(), model_id, ids[i]) for i in range(len(ids))],
        )

    async def vectors(
        self, model_id: str, dim: int, batch: int = 20_000
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every ``(ids, vectors)`` embedded with ``model_id``, read in batches."""
        import numpy as np

        id_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        after = 0
        while True:
            rows = await self._store.fetchall(
                "SELECT id, embedding FROM memories WHERE model_id = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (model_id, after, batch),
            )
            if not rows:
                break
            id_parts.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
            blob = b"".join(r[1] for r in rows)
            vec_parts.append(np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim))
            after = int(rows[-1][0])
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    async def keyword_search(
        self, query: str, namespaces: Sequence[str], now: datetime, limit: int
    ) -> list[tuple[Memory, float]]:
        """Full-text matches (BM25), for when no embedding model is available."""
        match = fts_query(query)
        if match is None or not namespaces:
            return []
        cols = ", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))
        rows = await self._store.fetchall(
            f"SELECT {cols}, bm25(memories_fts) AS rank FROM memories_fts"
            " JOIN memories m ON m.id = memories_fts.rowid WHERE memories_fts MATCH ?"
            f" AND m.namespace IN ({_in(namespaces)})"
            " AND (m.expires_at IS NULL OR m.expires_at > ?) ORDER BY rank LIMIT ?",
            [match, *namespaces, to_iso(now), limit],
        )
        return [(_memory(r), -float(r["rank"])) for r in rows]
