"""The FAISS index behind semantic memory: a derived, rebuildable copy of SQLite's vectors.

Exact search (``IndexIDMap2`` over ``IndexFlatIP``) up to ``approximate_above``
vectors, HNSW above it: a flat scan of 100k x 384 costs ~6.6 ms per query on one core,
HNSW ~0.4-0.8 ms at recall@10 >= 0.98 (notes/PERFORMANCE.md). Vectors are normalized,
so inner product is cosine similarity.

HNSW cannot remove vectors, so removals there are tombstones, filtered out of results
and dropped by :meth:`VectorIndex.compact` (a rebuild) once they pass a tenth of the
index. The index is saved as ``<name>.faiss`` plus a JSON sidecar describing what it
holds (model, count, max id, id sum, tombstones); both are written to a temp file and
renamed, sidecar last, so a crash leaves either the old pair or a mismatch that the
next start detects and repairs by rebuilding from SQLite.

Every method is blocking and CPU-bound: callers run them via ``asyncio.to_thread``
and serialize them (FAISS indexes are not safe for concurrent add and search).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

Kind = Literal["flat", "hnsw"]
COMPACT_FRACTION = 0.1
BUILD_THREADS = max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What an index holds, compared with SQLite at start to decide if it is stale."""

    model_id: str
    dim: int
    count: int
    max_id: int
    id_sum: int


@dataclass(slots=True)
class Sidecar:
    """The JSON written next to the index file."""

    model_id: str
    dim: int
    kind: str
    count: int
    max_id: int
    id_sum: int
    file_bytes: int
    tombstones: list[int] = field(default_factory=list)


class VectorIndex:
    """An ID-mapped inner-product index that switches to HNSW when it grows.

    Args:
        dim: vector width.
        model_id: the model whose vectors it holds.
        approximate_above: more live vectors than this means HNSW.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (recall vs. speed).
    """

    def __init__(
        self,
        dim: int,
        model_id: str,
        *,
        approximate_above: int = 5_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
    ) -> None:
        self.dim = dim
        self.model_id = model_id
        self.approximate_above = approximate_above
        self._m = hnsw_m
        self._ef_search = ef_search
        self._ef_construction = ef_construction
        self._tombstones: set[int] = set()
        self._index: Any = self._empty("flat")
        faiss.omp_set_num_threads(1)  # one thread is fastest for single queries

    @property
    def kind(self) -> Kind:
        """``flat`` (exact) or ``hnsw`` (approximate)."""
        inner = faiss.downcast_index(self._index.index)
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"

    def __len__(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def needs_compaction(self) -> bool:
        """Enough tombstones that a rebuild pays off."""
        return len(self._tombstones) > COMPACT_FRACTION * max(1, int(self._index.ntotal))

    def ids(self) -> np.ndarray:
        """Every live id."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self._tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))]
        return ids

    def stats(self) -> IndexStats:
        """Count, max and sum of the live ids, with the model and width."""
        ids = self.ids()
        return IndexStats(
            self.model_id,
            self.dim,
            int(ids.size),
            int(ids.max()) if ids.size else 0,
            int(ids.sum()),
        )

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the contents with ``vectors`` under ``ids``."""
        kind: Kind = "hnsw" if len(ids) > self.approximate_above else "flat"
        index = self._empty(kind)
        self._add_to(index, ids, vectors)
        self._index = index
        self._tombstones = set()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors; switch to HNSW when the index outgrows exact search."""
        if len(ids) == 0:
            return
        if self.kind == "flat" and len(self) + len(ids) > self.approximate_above:
            old_ids, old_vectors = self._contents()
            self.build(np.concatenate([old_ids, ids]), np.concatenate([old_vectors, vectors]))
            return
        self._tombstones.difference_update(int(i) for i in ids)
        self._add_to(self._index, ids, vectors)

    def remove(self, ids: list[int]) -> None:
        """Remove ids (flat: at once; HNSW: as tombstones until :meth:`compact`)."""
        if not ids:
            return
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))
        else:
            self._tombstones.update(ids)

    def compact(self) -> None:
        """Rebuild without the tombstoned vectors."""
        ids, vectors = self._contents()
        self.build(ids, vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query; missing slots have id -1."""
        total = int(self._index.ntotal)
        if total == 0 or k <= 0:
            shape = (len(queries), max(k, 0))
            return np.zeros(shape, dtype=np.float32), np.full(shape, -1, dtype=np.int64)
        fetch = min(total, k + len(self._tombstones))
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
        if self._tombstones:
            dead = np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
            ids = np.where(dead, -1, ids)
            order = np.argsort(ids == -1, axis=1, kind="stable")
            ids = np.take_along_axis(ids, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
        return scores[:, :k], ids[:, :k]

    def save(self, path: Path) -> None:
        """Write the index and its sidecar atomically (temp file + rename, sidecar last)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        os.replace(tmp, path)
        stats = self.stats()
        sidecar = Sidecar(
            model_id=self.model_id,
            dim=self.dim,
            kind=self.kind,
            count=stats.count,
            max_id=stats.max_id,
            id_sum=stats.id_sum,
            file_bytes=path.stat().st_size,
            tombstones=sorted(self._tombstones),
        )
        side = sidecar_path(path)
        tmp_side = side.with_name(side.name + ".tmp")
        tmp_side.write_text(json.dumps(asdict(sidecar)), encoding="utf-8")
        os.replace(tmp_side, side)

    def load(self, path: Path) -> IndexStats | None:
        """Read a saved index; None when it is missing, unreadable or for other vectors."""
        side = sidecar_path(path)
        try:
            sidecar = Sidecar(**json.loads(side.read_text(encoding="utf-8")))
            if sidecar.file_bytes != path.stat().st_size:
                return None
            if sidecar.model_id != self.model_id or sidecar.dim != self.dim:
                return None
            index = faiss.read_index(str(path))
        except (OSError, ValueError, TypeError, RuntimeError):
            return None
        if not isinstance(index, faiss.IndexIDMap2) or index.d != self.dim:
            return None
        self._index = index
        self._tombstones = set(sidecar.tombstones)
        self._tune()
        stats = self.stats()
        if (stats.count, stats.max_id, stats.id_sum) != (
            sidecar.count,
            sidecar.max_id,
            sidecar.id_sum,
        ):
            return None
        return stats

    def _empty(self, kind: Kind) -> Any:
        inner: Any
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self._m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self._ef_construction
            inner.hnsw.efSearch = self._ef_search
        return faiss.IndexIDMap2(inner)

    def _tune(self) -> None:
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self._ef_search

    def _add_to(self, index: Any, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        bulk = len(ids) >= 1000
        if bulk:  # building a graph parallelizes well; single queries do not
            faiss.omp_set_num_threads(BUILD_THREADS)
        try:
            index.add_with_ids(vectors, ids)
        finally:
            if bulk:
                faiss.omp_set_num_threads(1)

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Live ids and their vectors, read back from the index's own storage."""
        inner: Any = faiss.downcast_index(self._index.index)
        hnsw = isinstance(inner, faiss.IndexHNSW)
        storage: Any = faiss.downcast_index(inner.storage) if hnsw else inner
        vectors = faiss.vector_to_array(storage.codes).view(np.float32).reshape(-1, self.dim)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        return ids, vectors.copy()


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of an index file."""
    return path.with_name(path.name + ".json")
