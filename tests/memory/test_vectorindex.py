"""The FAISS wrapper: exact and HNSW search, removal, the file and its sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from memory.vectorindex import VectorIndex, sidecar_path


def _vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    # Clustered, like embeddings: random Gaussian vectors make HNSW recall meaningless.
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, dim))
    v = centers[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_flat_search_is_exact_and_removal_is_immediate() -> None:
    v = _vectors(200)
    index = VectorIndex(32, "m", approximate_above=1000)
    index.add(np.arange(1, 201), v)
    scores, ids = index.search(v[:3], 1)
    assert ids[:, 0].tolist() == [1, 2, 3] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    index.remove([1, 2])
    assert len(index) == 198 and index.kind == "flat"
    _, ids = index.search(v[:2], 5)
    assert 1 not in ids and 2 not in ids


def test_growing_past_the_threshold_switches_to_hnsw_with_tombstones() -> None:
    v = _vectors(400)
    index = VectorIndex(32, "m", approximate_above=300)
    index.add(np.arange(1, 201), v[:200])
    index.add(np.arange(201, 401), v[200:])
    assert index.kind == "hnsw" and len(index) == 400
    index.remove([5, 6])
    _, ids = index.search(v[4:6], 10)
    assert ids[0, 0] != 5 and 5 not in ids and 6 not in ids
    assert len(index) == 398 and not index.needs_compaction
    index.remove(list(range(10, 60)))
    assert index.needs_compaction
    index.compact()
    assert len(index) == 348 and index.stats().count == 348


def test_save_and_load_round_trip_and_refuse_mismatches(tmp_path: Path) -> None:
    path = tmp_path / "m.faiss"
    v = _vectors(400)
    index = VectorIndex(32, "m", approximate_above=300)
    index.add(np.arange(1, 401), v)
    index.remove([7])
    index.save(path)
    before = index.search(v[:5], 5)

    loaded = VectorIndex(32, "m", approximate_above=300)
    stats = loaded.load(path)
    assert stats == index.stats()
    after = loaded.search(v[:5], 5)
    assert np.array_equal(before[1], after[1])

    assert VectorIndex(32, "other-model").load(path) is None
    assert VectorIndex(16, "m").load(path) is None
    side = json.loads(sidecar_path(path).read_text())
    side["count"] += 1
    sidecar_path(path).write_text(json.dumps(side))
    assert VectorIndex(32, "m").load(path) is None
    path.write_bytes(b"garbage")
    assert VectorIndex(32, "m").load(path) is None
    assert VectorIndex(32, "m").load(tmp_path / "missing.faiss") is None


@pytest.mark.parametrize("k", [0, 3])
def test_an_empty_index_answers_nothing(k: int) -> None:
    _, ids = VectorIndex(8, "m").search(np.zeros((1, 8), dtype=np.float32), k)
    assert ids.shape == (1, k) and (ids == -1).all()
