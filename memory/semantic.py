"""Semantic memory: what agents remember, found again by meaning.

SQLite (the ``memories`` table) is the truth: text, tier, owner, source, times and the
vector with its model id. The FAISS index (:mod:`memory.vectorindex`) is derived: at
start it is loaded and checked against the table (model, count, max id, id sum) and
rebuilt from the stored vectors when missing, stale or made by another model; rows
without a vector from the current model are embedded first. A search always re-reads
its hits from SQLite, so a stale index entry can never surface a deleted or expired
memory.

Tiers: *ephemeral* turns live in process (:mod:`memory.ephemeral`); *working* rows
expire ``working_ttl_s`` after their last use (a recall that returns one refreshes it);
*durable* rows stay until forgotten. :meth:`SemanticMemory.evict` removes expired rows
and their vectors. Every write and delete appends an event in the same transaction
(namespace, tier, size and a digest, never the text).

Ownership: an agent gets a :class:`MemorySpace` for its own namespace; it writes and
deletes only there, and reads other namespaces only when it names them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from config import MemorySettings
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder
from memory.ephemeral import EphemeralMemory
from memory.errors import EmbedderUnavailable, NotFoundError, OwnershipError
from memory.events import Draft, EventLog
from memory.memories import Memory, MemoryRepo, NewMemory, Tier
from memory.store import Store

if TYPE_CHECKING:  # numpy and faiss load with the index, when memory is first needed
    import numpy as np

    from memory.vectorindex import VectorIndex

log = logging.getLogger(__name__)

EMBED_BATCH = 512
# Preparing the index again after a failure (a full disk, a locked file): the first
# retry after PREPARE_RETRY_BASE_S, doubling up to PREPARE_RETRY_CAP_S, for as long
# as it fails. Recall uses keyword search meanwhile instead of waiting.
PREPARE_RETRY_BASE_S = 1.0
PREPARE_RETRY_CAP_S = 300.0
# Published (with the ids) after a commit that evicted expired memories.
EVICTED_TOPIC = "memory.evicted"

Sleep = Callable[[float], Awaitable[None]]


def prepare_retry_delay(attempt: int) -> float:
    """Seconds to wait after failed preparation attempt ``attempt`` (1-based)."""
    return min(PREPARE_RETRY_CAP_S, PREPARE_RETRY_BASE_S * 2.0 ** min(max(0, attempt - 1), 30))


@dataclass(frozen=True, slots=True)
class IndexState:
    """Where the index's preparation stands, for /status.

    ``phase``: ``loading`` (model or index not ready yet), ``ready``, ``retrying``
    (attempt ``attempt`` comes after a failure) or ``keyword`` (no model: keyword search).
    """

    phase: str
    attempt: int = 1
    error: str = ""

    def describe(self) -> str:
        """The state in words: ``memory index: ...``."""
        if self.phase == "ready":
            return "memory index: ready"
        if self.phase == "retrying":
            return (
                "memory index: preparing again after a write failure"
                f" (attempt {self.attempt}); recall uses keyword search meanwhile"
            )
        if self.phase == "keyword":
            return "memory index: keyword search only (the language model could not load)"
        return "memory index: preparing (the language model is loading)"


def fingerprint(text: str) -> str:
    """A short digest that identifies a text in events without storing it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Hit:
    """One recalled memory. ``memory_id`` is None for an ephemeral turn."""

    memory_id: int | None
    namespace: str
    tier: Tier
    text: str
    score: float
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Recall:
    """The result of a search: hits, how they were found and how long the model took."""

    hits: list[Hit]
    semantic: bool  # False: the model is unavailable and this is a keyword search
    waited_s: float = 0.0


class SemanticMemory:
    """The memory of every agent. Start with :meth:`start`, stop with :meth:`close`."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        embedder: Embedder,
        index_path: Path,
        settings: MemorySettings | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._sleep = sleep  # injected: tests retry without waiting
        self._events = events
        self._embedder = embedder
        self._path = index_path
        self._settings = settings or MemorySettings()
        self._clock = clock or SystemClock()
        self._rows = MemoryRepo(store)
        self.ephemeral = EphemeralMemory(
            self._settings.ephemeral_turns, self._settings.ephemeral_conversations
        )
        self._index: VectorIndex | None = None
        self._lock = asyncio.Lock()  # one index operation at a time
        self._ready = asyncio.Event()
        self._failed: BaseException | None = None
        self._dirty = False
        self._stale = False
        self._prepare: asyncio.Task[None] | None = None
        self.rebuilt = False  # whether the last preparation rebuilt the index
        self.state = IndexState("loading")
        self._state_changed = asyncio.Condition()

    @property
    def ttl(self) -> timedelta:
        """How long a working memory lives after its last use."""
        return timedelta(seconds=self._settings.working_ttl_s)

    @property
    def is_ready(self) -> bool:
        """Whether searches can run semantically now."""
        return self._index is not None

    def space(self, namespace: str) -> MemorySpace:
        """The handle through which the agent ``namespace`` uses memory."""
        return MemorySpace(self, namespace)

    async def start(self) -> None:
        """Begin loading the model and preparing the index in the background."""
        self._embedder.start()
        if self._prepare is None:
            self._prepare = asyncio.create_task(self._prepare_index(), name="memory-prepare")

    async def close(self) -> None:
        """Stop background work and save the index if it changed."""
        if self._prepare is not None:
            self._prepare.cancel()
            await asyncio.gather(self._prepare, return_exceptions=True)
            self._prepare = None
        async with self._lock:
            if self._index is not None and self._dirty and not self._stale:
                await asyncio.to_thread(self._index.save, self._path)
                self._dirty = False

    async def wait_ready(self) -> bool:
        """Wait for the index; False when no model could load (keyword search only).

        While the preparation is being retried after a failure this does not wait:
        it answers False at once, and searches use keywords until the index is back.
        """
        if self._prepare is None:
            await self.start()
        if self.state.phase == "retrying":
            return False
        if self._failed is None and not self._ready.is_set():
            await self._ready.wait()
        return self._failed is None and self._index is not None

    async def wait_state(self, phases: Sequence[str]) -> IndexState:
        """Wait until the preparation reaches one of ``phases``; return the state."""
        async with self._state_changed:
            await self._state_changed.wait_for(lambda: self.state.phase in phases)
            return self.state

    async def _set_state(self, state: IndexState) -> None:
        async with self._state_changed:
            self.state = state
            self._state_changed.notify_all()

    async def _prepare_index(self) -> None:
        attempt = 1
        try:
            await self._embedder.ready()
            while True:
                try:
                    await self._prepare_once()
                    break
                except EmbedderUnavailable:
                    raise
                except Exception as exc:  # a transient write failure must not end it
                    log.exception(
                        "semantic memory could not prepare its index (attempt %d)", attempt
                    )
                    attempt += 1
                    await self._set_state(IndexState("retrying", attempt, str(exc)[:200]))
                    # Searches must not wait through the retries: they use keywords now.
                    self._ready.set()
                    await self._sleep(prepare_retry_delay(attempt - 1))
            await self._set_state(IndexState("ready", attempt))
        except EmbedderUnavailable as exc:
            log.warning("semantic memory falls back to keyword search: %s", exc)
            self._failed = exc
            await self._set_state(IndexState("keyword", attempt, str(exc)[:200]))
        finally:
            self._ready.set()

    async def _prepare_once(self) -> None:
        embedded = await self._embed_missing()  # the bulk, without holding the lock
        async with self._lock:
            embedded += await self._embed_missing()  # rows written meanwhile
            # Fresh vectors are in no saved index, whatever its counts say.
            await self._load_or_rebuild(force=embedded > 0)

    async def _embed_missing(self) -> int:
        """Embed rows that have no vector from the current model; return how many."""
        model_id = self._embedder.model_id
        done = 0
        while pending := await self._rows.unembedded(model_id, EMBED_BATCH):
            ids = [memory_id for memory_id, _ in pending]
            vectors = await asyncio.to_thread(self._embedder.embed, [t for _, t in pending])
            async with self._store.write() as tx:
                await self._rows.set_embeddings(tx, ids, vectors, model_id)
            done += len(ids)
        return done

    async def _load_or_rebuild(self, *, force: bool = False) -> None:
        from memory.vectorindex import VectorIndex

        model_id, dim = self._embedder.model_id, self._embedder.dim
        index = VectorIndex(
            dim,
            model_id,
            approximate_above=self._settings.approximate_above,
            hnsw_m=self._settings.hnsw_m,
            ef_search=self._settings.hnsw_ef_search,
        )
        loaded = None if force else await asyncio.to_thread(index.load, self._path)
        count, max_id, id_sum = await self._rows.embedded_stats(model_id)
        if loaded is None or (loaded.count, loaded.max_id, loaded.id_sum) != (
            count,
            max_id,
            id_sum,
        ):
            await self._rebuild(index)
        self._index = index
        self._stale = False

    async def _rebuild(self, index: VectorIndex) -> None:
        started = time.perf_counter()
        ids, vectors = await self._rows.vectors(index.model_id, index.dim)
        await asyncio.to_thread(index.build, ids, vectors)
        await asyncio.to_thread(index.save, self._path)
        self.rebuilt = True
        self._dirty = False
        log.info(
            "memory index rebuilt from SQLite: %d vectors (%s) in %.2f s",
            len(ids),
            index.kind,
            time.perf_counter() - started,
        )

    # -- writes ---------------------------------------------------------------------

    async def _write(
        self,
        namespace: str,
        items: Sequence[tuple[str, str, Tier]],
        *,
        actor: str,
        vectors: np.ndarray | None = None,
    ) -> list[tuple[Memory, bool]]:
        """Store ``(text, source_key, tier)`` items of one namespace, once per key."""
        now = self._clock.now()
        rows = [
            NewMemory(namespace, tier, text, key, now + self.ttl if tier is Tier.WORKING else None)
            for text, key, tier in items
        ]
        async with self._lock:
            ready = self._index is not None
            if vectors is None and ready:
                vectors = await asyncio.to_thread(self._embedder.embed, [r.text for r in rows])
            model_id = self._embedder.model_id if vectors is not None else None
            async with self._store.write() as tx:
                stored = await self._rows.insert_many(
                    tx, rows, now=now, model_id=model_id, vectors=vectors
                )
                fresh = [memory for memory, created in stored if created]
                seqs = await self._events.append_many(
                    tx,
                    [
                        Draft(
                            "memory.written",
                            actor,
                            f"memory:{memory.id}",
                            {
                                "namespace": namespace,
                                "tier": memory.tier.value,
                                "chars": len(memory.text),
                                "sha256": fingerprint(memory.text),
                                "source": memory.source_key,
                            },
                        )
                        for memory in fresh
                    ],
                )
                await self._rows.set_source_events(
                    tx, [(m.id, s) for m, s in zip(fresh, seqs, strict=True)]
                )
                linked = {
                    m.id: replace(m, source_event=s) for m, s in zip(fresh, seqs, strict=True)
                }
                stored = [(linked.get(m.id, m) if created else m, created) for m, created in stored]
            if ready and vectors is not None and fresh:
                index = self._index
                assert index is not None
                positions = [i for i, (_, created) in enumerate(stored) if created]
                import numpy as np

                ids = np.array([m.id for m in fresh], dtype=np.int64)
                try:
                    await asyncio.to_thread(index.add, ids, vectors[positions])
                    self._dirty = True
                except Exception:
                    log.exception("adding to the memory index failed; it will be rebuilt")
                    self._stale = True
        return stored

    async def _forget(self, namespace: str, memory_id: int, *, actor: str) -> Memory:
        async with self._store.write() as tx:
            memory = await self._rows.get(memory_id, tx)
            if memory is None:
                raise NotFoundError(f"there is no memory #{memory_id}")
            if memory.namespace != namespace:
                raise OwnershipError(
                    f"memory #{memory_id} belongs to {memory.namespace!r}; only that agent"
                    " may forget it"
                )
            await self._rows.delete(tx, memory_id)
            await self._events.append(
                tx,
                "memory.deleted",
                actor=actor,
                subject=f"memory:{memory_id}",
                payload=_deleted(memory, "forget"),
            )
        await self._unindex([memory_id])
        # What was forgotten must not come back through the recent-turns tier.
        self.ephemeral.discard(memory.text)
        return memory

    async def _unindex(self, ids: list[int]) -> None:
        async with self._lock:
            if self._index is not None and ids:
                await asyncio.to_thread(self._index.remove, ids)
                self._dirty = True

    async def evict(self) -> int:
        """Delete expired working memories and their vectors; return how many."""
        now = self._clock.now()
        async with self._store.write() as tx:
            expired = await self._rows.expired(tx, now)
            for memory in expired:
                await self._rows.delete(tx, memory.id)
            await self._events.append_many(
                tx,
                [
                    Draft("memory.deleted", "memory", f"memory:{m.id}", _deleted(m, "expired"))
                    for m in expired
                ],
            )
            if expired:
                tx.publish(EVICTED_TOPIC, [m.id for m in expired])
        await self._unindex([m.id for m in expired])
        return len(expired)

    async def maintain(self) -> int:
        """The periodic job: evict, repair or compact the index, save it if changed."""
        evicted = await self.evict()
        async with self._lock:
            index = self._index
            if index is None:
                return evicted
            if self._stale:
                await self._rebuild(index)
                self._stale = False
            elif index.needs_compaction:
                await asyncio.to_thread(index.compact)
                self._dirty = True
            if self._dirty:
                await asyncio.to_thread(index.save, self._path)
                self._dirty = False
        return evicted

    # -- reads ----------------------------------------------------------------------

    async def search(
        self,
        query: str,
        namespaces: Sequence[str],
        *,
        limit: int = 5,
        conversation: str | None = None,
    ) -> Recall:
        """The memories of ``namespaces`` closest in meaning to ``query``, best first.

        With ``conversation``, that conversation's recent turns compete too. Waits for
        the model if it is still loading; without a model, falls back to keywords.
        """
        loading = not self._ready.is_set()
        started = self._clock.now()
        semantic = await self.wait_ready()
        now = self._clock.now()
        # Only a wait for the model counts (on the injected clock), not a slow embedding.
        waited = (now - started).total_seconds() if loading else 0.0
        if not semantic:
            found = await self._rows.keyword_search(query, namespaces, now, limit)
            hits = rank_hits(
                [_hit(memory, score) for memory, score in found],
                [],
                query=query,
                limit=limit,
                min_score=float("-inf"),  # BM25 ranks are not similarities
            )
            return Recall(hits, semantic=False, waited_s=waited)
        turns = self.ephemeral.recent(conversation, now) if conversation else []
        texts = [query, *(turn.text for turn in turns)]
        nearest, turn_scores = await self._nearest(texts, namespaces, limit, now)
        hits = rank_hits(
            nearest,
            [
                Hit(None, "", Tier.EPHEMERAL, turn.text, score, turn.at)
                for turn, score in zip(turns, turn_scores, strict=True)
            ],
            query=query,
            limit=limit,
            min_score=self._settings.recall_min_score,
        )
        working = [h.memory_id for h in hits if h.tier is Tier.WORKING and h.memory_id]
        if working:
            async with self._store.write() as tx:
                await self._rows.touch(tx, working, now, now + self.ttl)
        return Recall(hits, semantic=True, waited_s=waited)

    async def _nearest(
        self, texts: list[str], namespaces: Sequence[str], limit: int, now: datetime
    ) -> tuple[list[Hit], list[float]]:
        """Embed ``texts`` (the query first) and find the query's nearest live memories;
        also return the similarity of the other texts to the query.

        Embedding and search share one worker-thread hop (each hop costs ~0.2 ms). The
        index holds every namespace, and expired rows until eviction: fetch more than
        asked and widen until enough survive SQLite's filter, or everything was seen.
        """
        fetch = limit * 2
        async with self._lock:
            index = self._index
            assert index is not None
            vectors, scores, ids = await asyncio.to_thread(
                _embed_and_search, self._embedder, index, texts, fetch
            )
            total = len(index)
        others = [float(s) for s in vectors[1:] @ vectors[0]]
        while True:
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            live = await self._rows.live([i for i, _ in found], namespaces, now)
            hits = [_hit(live[i], s) for i, s in found if i in live]
            if len(hits) >= limit or fetch >= total:
                return hits[:limit], others
            fetch *= 4
            async with self._lock:
                index = self._index
                assert index is not None
                scores, ids = await asyncio.to_thread(index.search, vectors[:1], fetch)

    async def latest(self, namespace: str, limit: int = 10) -> list[Memory]:
        """The newest live memories of a namespace."""
        return await self._rows.latest(namespace, self._clock.now(), limit)

    async def count(self, namespace: str | None = None) -> int:
        """How many memories are stored."""
        return await self._rows.count(namespace)


class MemorySpace:
    """One agent's view of memory: writes to its own namespace only."""

    def __init__(self, memory: SemanticMemory, namespace: str) -> None:
        self._memory = memory
        self.namespace = namespace

    async def remember(
        self, text: str, *, source_key: str, actor: str, tier: Tier = Tier.DURABLE
    ) -> tuple[Memory, bool]:
        """Store ``text`` once per ``source_key``; return it and whether it is new."""
        if tier is Tier.EPHEMERAL:
            raise ValueError("ephemeral turns are kept with note_turn(), not stored")
        [(memory, created)] = await self._memory._write(
            self.namespace, [(text, source_key, tier)], actor=actor
        )
        return memory, created

    async def remember_many(
        self,
        items: Sequence[tuple[str, str]],
        *,
        actor: str,
        tier: Tier = Tier.DURABLE,
        vectors: np.ndarray | None = None,
    ) -> list[tuple[Memory, bool]]:
        """Store many ``(text, source_key)`` items in one transaction (``vectors``: their
        embeddings, when the caller has them already)."""
        return await self._memory._write(
            self.namespace, [(text, key, tier) for text, key in items], actor=actor, vectors=vectors
        )

    async def forget(self, memory_id: int, *, actor: str) -> Memory:
        """Delete one of this namespace's memories.

        Raises:
            NotFoundError: there is no such memory.
            OwnershipError: it belongs to another namespace.
        """
        return await self._memory._forget(self.namespace, memory_id, actor=actor)

    @property
    def index_state(self) -> IndexState:
        """Where the shared index's preparation stands (for /status)."""
        return self._memory.state

    def note_turn(self, conversation: str, text: str, at: datetime) -> None:
        """Keep a conversation turn in the ephemeral tier."""
        self._memory.ephemeral.add(conversation, text, at)

    async def search(
        self,
        query: str,
        *,
        also: Sequence[str] = (),
        limit: int = 5,
        conversation: str | None = None,
    ) -> Recall:
        """Search this namespace, plus the namespaces named in ``also``."""
        namespaces = list(dict.fromkeys([self.namespace, *also]))
        return await self._memory.search(query, namespaces, limit=limit, conversation=conversation)

    async def latest(self, limit: int = 10) -> list[Memory]:
        """This namespace's newest memories."""
        return await self._memory.latest(self.namespace, limit)

    async def count(self) -> int:
        """How many memories this namespace holds."""
        return await self._memory.count(self.namespace)


def same_text(text: str) -> str:
    """A text reduced for comparison: case and spacing do not make it different."""
    return " ".join(text.casefold().split())


def rank_hits(
    notes: Sequence[Hit], turns: Sequence[Hit], *, query: str, limit: int, min_score: float
) -> list[Hit]:
    """The hits a recall shows, in order: stored memories first (best first, each once
    by id and by text, none under ``min_score``), then recent turns only where they add
    something (not the query itself, not a stored memory's text, not under ``min_score``,
    each once), up to ``limit`` in all."""
    shown: list[Hit] = []
    ids: set[int] = set()
    texts: set[str] = set()
    # Equal texts score equally: the older note is the one shown.
    for hit in sorted(notes, key=lambda h: (-round(h.score, 5), h.memory_id or 0)):
        key = same_text(hit.text)
        if hit.score < min_score or hit.memory_id in ids or key in texts:
            continue
        if hit.memory_id is not None:
            ids.add(hit.memory_id)
        texts.add(key)
        shown.append(hit)
    stored = [same_text(h.text) for h in shown]
    texts.add(same_text(query))  # the question being asked is no answer to itself
    for hit in sorted(turns, key=lambda h: h.score, reverse=True):
        key = same_text(hit.text)
        if hit.score < min_score or key in texts or any(note in key for note in stored):
            continue
        texts.add(key)
        shown.append(hit)
    return shown[:limit]


def _embed_and_search(
    embedder: Embedder, index: VectorIndex, texts: list[str], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors = embedder.embed(texts)
    scores, ids = index.search(vectors[:1], k)
    return vectors, scores, ids


def _hit(memory: Memory, score: float) -> Hit:
    return Hit(memory.id, memory.namespace, memory.tier, memory.text, score, memory.created_at)


def _deleted(memory: Memory, reason: str) -> dict[str, object]:
    return {
        "namespace": memory.namespace,
        "tier": memory.tier.value,
        "chars": len(memory.text),
        "sha256": fingerprint(memory.text),
        "reason": reason,
    }
