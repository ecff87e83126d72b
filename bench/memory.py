"""Benchmark: soloops semantic memory against chromadb on the same vectors and queries.

Measures, on 100k synthetic note-like memories embedded once with all-MiniLM-L6-v2
(cached in ``bench/.cache``, so runs measure the stores, not the encoder):

- add throughput through the full write path (SQLite rows + vectors + hash-chained
  events + FAISS), in batches of 1000;
- search p50/p99 at 10k and 100k through the full read path (FAISS, then SQLite
  re-reads the hits), query embedding excluded;
- index rebuild time from SQLite (FAISS file deleted);
- recall@10 of the approximate (HNSW) index against exact search;
- the same add and search on chromadb (PersistentClient, cosine HNSW), and the ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench import peers
from bench.corpus import embedded, queries, texts
from bench.harness import Row, ratio_at_least, ratio_at_most
from config import MemorySettings
from memory.events import EventLog
from memory.semantic import SemanticMemory
from memory.store import Store
from memory.vectorindex import VectorIndex

N_TOTAL = 100_000
N_SMALL = 10_000
N_QUERIES = 500
BATCH = 1000
K = 10


class CachedEmbedder:
    """Serves precomputed vectors, so the benchmark measures the store, not the model."""

    model_id = "all-MiniLM-L6-v2"
    dim = 384
    is_ready = True

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self._table = table

    def start(self) -> None:
        return None

    async def ready(self) -> None:
        return None

    def embed(self, items: Sequence[str]) -> np.ndarray:
        return np.stack([self._table[t] for t in items]).astype(np.float32)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50 * 1000, p99 * 1000


async def _timed_searches(search: Callable[[str], Any], qs: list[str]) -> tuple[float, float]:
    for q in qs[:20]:  # warm caches
        await search(q)
    samples = []
    for q in qs:
        started = time.perf_counter()
        await search(q)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


async def bench_soloops(
    home: Path,
    items: list[str],
    vectors: np.ndarray,
    qs: list[str],
    qv: np.ndarray,
    n_small: int = N_SMALL,
) -> dict[str, Any]:
    table = {q: qv[i] for i, q in enumerate(qs)}
    embedder = CachedEmbedder(table)
    result: dict[str, Any] = {}
    settings = MemorySettings()
    async with Store.open(home / "soloops.db") as store:
        memory = SemanticMemory(store, EventLog(store), embedder, home / "memory.faiss", settings)
        await memory.start()
        assert await memory.wait_ready()
        space = memory.space("bench")

        async def search(q: str) -> None:
            await space.search(q, limit=K)

        add_seconds = 0.0
        for start in range(0, len(items), BATCH):
            chunk = [(items[i], f"b{i}") for i in range(start, min(start + BATCH, len(items)))]
            began = time.perf_counter()
            await space.remember_many(chunk, actor="bench", vectors=vectors[start : start + BATCH])
            add_seconds += time.perf_counter() - began
            done = start + len(chunk)
            if done == n_small:
                result["add_10k_per_s"] = n_small / add_seconds
                result["search_10k"] = await _timed_searches(search, qs)
        result["add_per_s"] = len(items) / add_seconds
        result["search_100k"] = await _timed_searches(search, qs)
        await memory.close()

    (home / "memory.faiss").unlink()
    async with Store.open(home / "soloops.db") as store:
        memory = SemanticMemory(store, EventLog(store), embedder, home / "memory.faiss", settings)
        began = time.perf_counter()
        await memory.start()
        assert await memory.wait_ready() and memory.rebuilt
        result["rebuild_s"] = time.perf_counter() - began
        await memory.close()
    return result


def recall_at_k(vectors: np.ndarray, qv: np.ndarray, settings: MemorySettings) -> dict[str, Any]:
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    default_threshold = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 20  # batched queries: use BLAS
    _, truth = exact.search(qv, K)
    faiss.cvar.distance_compute_blas_threshold = default_threshold  # single queries: not
    truth = truth + 1
    approx = VectorIndex(
        vectors.shape[1],
        "m",
        approximate_above=settings.approximate_above,
        hnsw_m=settings.hnsw_m,
        ef_search=settings.hnsw_ef_search,
    )
    began = time.perf_counter()
    approx.build(ids, vectors)
    build_s = time.perf_counter() - began
    _, found = approx.search(qv, K)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth, found, strict=True))
    samples = []
    faiss.omp_set_num_threads(1)
    for q in qv:
        began = time.perf_counter()
        approx.search(q[None, :], K)
        samples.append(time.perf_counter() - began)
    flat_samples = []
    for q in qv[:200]:
        began = time.perf_counter()
        exact.search(q[None, :], K)
        flat_samples.append(time.perf_counter() - began)
    return {
        "recall": hits / (len(qv) * K),
        "hnsw_build_s": build_s,
        "hnsw_only": _percentiles(samples),
        "flat_only": _percentiles(flat_samples),
        "kind": approx.kind,
    }


async def bench_chroma(
    home: Path,
    items: list[str],
    vectors: np.ndarray,
    qs: list[str],
    qv: np.ndarray,
    n_small: int = N_SMALL,
) -> dict[str, Any] | None:
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError:
        return await asyncio.to_thread(_chroma_in_bench_venv, home, items, vectors, qv, n_small)
    client = chromadb.PersistentClient(
        path=str(home / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.create_collection(
        "bench", metadata={"hnsw:space": "ip"}, embedding_function=None
    )
    lookup = {q: qv[i].tolist() for i, q in enumerate(qs)}
    result: dict[str, Any] = {}

    async def search(q: str) -> None:
        collection.query(query_embeddings=[lookup[q]], n_results=K)

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
            result["search_10k"] = await _timed_searches(search, qs)
    result["add_per_s"] = len(items) / add_seconds
    result["search_100k"] = await _timed_searches(search, qs)
    return result


def _chroma_in_bench_venv(
    home: Path, items: list[str], vectors: np.ndarray, qv: np.ndarray, n_small: int
) -> dict[str, Any] | None:
    """chromadb's side in ``.venv-bench`` (``bench/chroma_side.py``), if it is there."""
    if not peers.chroma_in_venv():
        return None
    probe = peers.python()
    home.mkdir(parents=True, exist_ok=True)
    arrays, listed = home / "input.npz", home / "input.json"
    np.savez(arrays, vectors=vectors, queries=qv)
    listed.write_text(json.dumps(items), encoding="utf-8")
    done = subprocess.run(
        [
            str(probe),
            str(Path(__file__).with_name("chroma_side.py")),
            str(home / "db"),
            str(arrays),
            str(listed),
            str(n_small),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(f"chroma_side.py failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def encode_rate() -> float:
    """Texts per second of the real model (for scale: the encoder limits writes)."""
    from memory.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.load()
    sample = texts(1024, seed=99)
    embedder.embed(sample[:64])
    began = time.perf_counter()
    embedder.embed(sample)
    return len(sample) / (time.perf_counter() - began)


def _ms(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f} / {pair[1]:.2f}"


def report(ours: dict[str, Any], quality: dict[str, Any], chroma: dict[str, Any] | None) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x"

    rows = [
        "| measure | soloops (SQLite + FAISS) | chromadb | soloops advantage |",
        "| --- | --- | --- | --- |",
    ]
    c = chroma or {}

    def line(name: str, ours_v: str, chroma_v: str, adv: str) -> None:
        rows.append(f"| {name} | {ours_v} | {chroma_v} | {adv} |")

    line(
        "add, first 10k (memories/s)",
        f"{ours['add_10k_per_s']:,.0f}",
        f"{c['add_10k_per_s']:,.0f}" if c else "-",
        ratio(ours["add_10k_per_s"], c["add_10k_per_s"]) if c else "-",
    )
    line(
        "add, 100k total (memories/s)",
        f"{ours['add_per_s']:,.0f}",
        f"{c['add_per_s']:,.0f}" if c else "-",
        ratio(ours["add_per_s"], c["add_per_s"]) if c else "-",
    )
    for size in ("10k", "100k"):
        key = f"search_{size}"
        line(
            f"search at {size}, p50 / p99 (ms)",
            _ms(ours[key]),
            _ms(c[key]) if c else "-",
            ratio(c[key][0], ours[key][0]) if c else "-",
        )
    line("index rebuild from SQLite, 100k (s)", f"{ours['rebuild_s']:.1f}", "-", "-")
    line(f"recall@{K} of HNSW vs exact, 100k", f"{quality['recall']:.3f}", "-", "-")
    return "\n".join(rows)


async def run() -> None:
    """Run everything and print the table."""
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    items = texts(N_TOTAL)
    qs = queries(N_QUERIES)
    vectors = embedded("texts", items)
    qv = embedded("queries", qs)
    home = Path(tempfile.mkdtemp(prefix="soloops-bench-"))
    try:
        print("soloops: adding 100k memories ...", flush=True)
        ours = await bench_soloops(home / "soloops", items, vectors, qs, qv)
        print("FAISS alone: recall@10 and raw latency ...", flush=True)
        quality = recall_at_k(vectors, qv, MemorySettings())
        print("chromadb: adding 100k memories ...", flush=True)
        chroma = await bench_chroma(home / "chroma", items, vectors, qs, qv)
        rate = encode_rate()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(report(ours, quality, chroma))
    print()
    print(
        f"FAISS alone at 100k, one thread, p50 / p99 ms: HNSW {_ms(quality['hnsw_only'])},"
        f" exact {_ms(quality['flat_only'])}; HNSW build {quality['hnsw_build_s']:.1f} s."
    )
    print(f"Encoder for scale: all-MiniLM-L6-v2 embeds {rate:,.0f} texts/s on this machine.")
    if chroma is None:
        print("chromadb is not installed: make bench puts chromadb==1.5.9 into .venv-bench.")


async def rows(n_total: int, n_queries: int, *, quick: bool) -> list[Row]:
    """The memory rows of ``python -m bench``: soloops against chromadb at ``n_total``.

    ``quick`` uses random unit vectors instead of the model's (structure, not numbers).
    """
    items = texts(n_total)
    qs = queries(n_queries)
    if quick:
        rng = np.random.default_rng(5)
        vectors = rng.standard_normal((n_total, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        qv = rng.standard_normal((n_queries, 384)).astype(np.float32)
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    else:
        vectors = embedded("texts", items)
        qv = embedded("queries", qs)
    n_small = min(N_SMALL, max(BATCH, (n_total // BATCH // 2) * BATCH))
    home = Path(tempfile.mkdtemp(prefix="soloops-bench-"))
    try:
        ours = await bench_soloops(home / "soloops", items, vectors, qs, qv, n_small)
        if not quick:  # a full run installs the peer into .venv-bench, as for LangGraph
            await asyncio.to_thread(peers.ensure_chroma)
        chroma = await bench_chroma(home / "chroma", items, vectors, qs, qv, n_small)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if chroma is None:
        missing = "chromadb not installed (make bench puts it into .venv-bench)"
    else:  # the note names the version measured (in .venv-bench, or in this venv)
        missing = f"chromadb {chroma.get('versions', {}).get('chromadb', '(in this venv)')}"
    size = f"{n_total:,}"
    add = Row(
        "memory",
        f"add, {size} memories (batches of {BATCH})",
        "memories/s",
        [ours["add_per_s"]],
        reference_name="chromadb",
        reference_unit="memories/s",
        reference_rounds=[chroma["add_per_s"]] if chroma else [],
        target=ratio_at_least(1.0, "faster than chromadb"),
        note=missing,
    )
    search = Row(
        "memory",
        f"search p50 at {size}",
        "ms",
        [ours["search_100k"][0]],
        reference_name="chromadb",
        reference_unit="ms",
        reference_rounds=[chroma["search_100k"][0]] if chroma else [],
        target=ratio_at_most(1.0),
        note=missing,
    )
    return [add, search]


def main() -> None:
    asyncio.run(run())
