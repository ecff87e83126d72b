"""chromadb's side of the memory rows, run in ``.venv-bench`` (chromadb's many
dependencies stay out of the venv the tests run in).

The same vectors and queries as soloops's side, written by :mod:`bench.memory` to a
``.npz`` and a JSON file; chromadb gets them as embeddings (``embedding_function=None``)
so it never loads or downloads a model of its own, and telemetry is off. Measures the
add in batches and the search p50/p99 (query embedding excluded) at the small size and
at the full size, as soloops's side does. Prints one JSON object.

Usage: ``.venv-bench/bin/python bench/chroma_side.py DIR INPUT.npz INPUT.json N_SMALL``.
Imports nothing of soloops.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings

BATCH = 1000
K = 10


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1000, p99 * 1000


def _searches(collection: Any, qv: np.ndarray) -> tuple[float, float]:
    for q in qv[:20]:  # warm caches, as soloops's side does
        collection.query(query_embeddings=[q.tolist()], n_results=K)
    samples = []
    for q in qv:
        query = [q.tolist()]
        started = time.perf_counter()
        collection.query(query_embeddings=query, n_results=K)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def main(home: Path, arrays: Path, texts: Path, n_small: int) -> dict[str, Any]:
    loaded = np.load(arrays)
    vectors, qv = loaded["vectors"], loaded["queries"]
    items = json.loads(texts.read_text(encoding="utf-8"))
    client = chromadb.PersistentClient(
        path=str(home), settings=Settings(anonymized_telemetry=False)
    )
    collection = client.create_collection(
        "bench", metadata={"hnsw:space": "ip"}, embedding_function=None
    )
    result: dict[str, Any] = {"versions": {"chromadb": version("chromadb")}}
    add_seconds = 0.0
    for start in range(0, len(items), BATCH):
        end = min(start + BATCH, len(items))
        began = time.perf_counter()
        collection.add(
            ids=[f"b{i}" for i in range(start, end)],
            embeddings=vectors[start:end],
            documents=items[start:end],
        )
        add_seconds += time.perf_counter() - began
        if end == n_small:
            result["add_10k_per_s"] = n_small / add_seconds
            result["search_10k"] = _searches(collection, qv)
    result["add_per_s"] = len(items) / add_seconds
    result["search_100k"] = _searches(collection, qv)
    return result


if __name__ == "__main__":
    home, arrays, texts, n_small = sys.argv[1:5]
    print(json.dumps(main(Path(home), Path(arrays), Path(texts), int(n_small))))
