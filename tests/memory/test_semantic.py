"""Semantic memory against real SQLite files, a real FAISS file and the real model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config import MemorySettings
from memory.embedder import Embedder, SentenceTransformerEmbedder
from memory.errors import NotFoundError, OwnershipError
from memory.events import EventLog
from memory.memories import Tier
from memory.semantic import SemanticMemory
from memory.store import Store

pytestmark = pytest.mark.slow

ACME = "Acme prefers invoices on the 1st of the month"
UNRELATED = [
    "Lunch with Carol on Thursday at the Thai place",
    "The studio wifi password is taped under the router",
    "Bob's daughter starts school in September",
    "Renew the domain soloops.dev before March",
    "Globex wants a demo of the dashboard next week",
    "Buy a new chair for the home office",
    "The accountant needs the receipts from Q3",
    "Jane likes to be called in the morning, never after 5pm",
    "Hooli's logo files are in the shared drive",
    "Pick up the printer cartridges on Friday",
    "Initech's CTO is named Bill and prefers Slack",
    "The train to Lyon leaves at 7:42",
    "Umbrella Corp asked for an NDA before the call",
    "Dentist appointment moved to the 14th",
    "Write the blog post about pricing experiments",
    "Stark Industries signed the pilot contract",
    "Order more coffee beans, the Ethiopian ones",
    "Wayne Enterprises needs the security review by May",
    "The conference talk is 25 minutes plus questions",
    "Cancel the unused design tool subscription",
    "Mum's birthday is on the 3rd of June",
    "Tyrell wants the API rate limits raised",
    "Back up the laptop before the OS upgrade",
    "The new intern starts on Monday",
    "Send the podcast host my bio and photo",
    "Vandelay Industries imports latex, ask about volumes",
    "Gym on Tuesdays and Thursdays",
    "Ideas for the newsletter: case studies, a FAQ, a tools list",
    "Book the hotel in Berlin for the trade fair",
    "Oceanic asked whether we support SSO",
    "Call the landlord about the heating",
    "The Figma file for the landing page is v3",
    "Dunder Mifflin still uses fax; send paper copies",
    "Cyberdyne's legal team is slow, expect 3 weeks",
    "Remember to stretch every hour",
    "Water the plants on the balcony",
    "Massive Dynamic asked for a custom report",
    "Fix the typo on the pricing page",
    "Pied Piper's compression demo impressed the investors",
    "The van needs an oil change at 60,000 km",
    "Soylent wants the onboarding emails translated",
    "Prepare slides for Thursday's workshop",
    "Aperture Science tests everything twice",
    "Check the SSL certificate expiry in October",
    "Blue Sun's support tickets go to Zoe",
    "Read the book on negotiation Marcus recommended",
    "Virtucon requested an on-site visit",
    "Nakatomi's office is on the 30th floor",
    "The coworking space closes at 9pm",
    "Sterling Cooper prefers phone calls to email",
]
assert len(UNRELATED) == 50


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


@asynccontextmanager
async def opened(
    home: Path, embedder: Embedder, clock: ManualClock | None = None, **settings: object
) -> AsyncIterator[SemanticMemory]:
    async with Store.open(home / "soloops.db") as store:
        memory = SemanticMemory(
            store,
            EventLog(store, clock=clock),
            embedder,
            home / "memory.faiss",
            MemorySettings(**settings),  # type: ignore[arg-type]
            clock,
        )
        await memory.start()
        try:
            yield memory
        finally:
            await memory.close()


async def _fill(memory: SemanticMemory) -> int:
    notes = memory.space("notes")
    acme, _ = await notes.remember(ACME, source_key="k-acme", actor="t")
    await notes.remember_many([(t, f"k{i}") for i, t in enumerate(UNRELATED)], actor="t")
    return acme.id


async def test_acceptance_a_question_finds_the_note_among_fifty(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        acme_id = await _fill(memory)
        recall = await memory.space("notes").search("when does Acme want to be billed?")
    assert recall.semantic
    assert recall.hits[0].memory_id == acme_id
    assert recall.hits[0].tier is Tier.DURABLE
    assert recall.hits[0].score > recall.hits[1].score


async def test_deleted_index_file_is_rebuilt_with_identical_results(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    queries = ["when does Acme want to be billed?", "who needs paperwork?", "travel plans"]
    async with opened(tmp_path, embedder) as memory:
        await _fill(memory)
        before = [await memory.search(q, ["notes"], limit=10) for q in queries]
    assert (tmp_path / "memory.faiss").exists()

    async with opened(tmp_path, embedder) as memory:
        assert await memory.wait_ready() and not memory.rebuilt  # the saved file was valid

    (tmp_path / "memory.faiss").unlink()
    async with opened(tmp_path, embedder) as memory:
        after = [await memory.search(q, ["notes"], limit=10) for q in queries]
        assert memory.rebuilt
    assert [[(h.memory_id, h.score) for h in r.hits] for r in after] == [
        [(h.memory_id, h.score) for h in r.hits] for r in before
    ]


async def test_a_stale_index_is_rebuilt_from_sqlite(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        acme_id = await _fill(memory)
    # A row deleted behind the index's back (e.g. a crash before the index was saved).
    async with Store.open(tmp_path / "soloops.db") as store, store.write() as tx:
        await tx.execute("DELETE FROM memories WHERE id = ?", (acme_id,))
    # No relevance cutoff: this test counts what the rebuilt index holds.
    async with opened(tmp_path, embedder, recall_min_score=-1.0) as memory:
        assert await memory.wait_ready() and memory.rebuilt
        hits = (await memory.search(ACME, ["notes"], limit=50)).hits
    assert acme_id not in [h.memory_id for h in hits]
    assert len(hits) == 50


async def test_vectors_of_another_model_are_re_embedded_and_the_index_rebuilt(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        acme_id = await _fill(memory)
    async with Store.open(tmp_path / "soloops.db") as store, store.write() as tx:
        await tx.execute("UPDATE memories SET model_id = 'old-model', embedding = zeroblob(8)")
    async with opened(tmp_path, embedder) as memory:
        hits = (await memory.search("when does Acme want to be billed?", ["notes"])).hits
        assert memory.rebuilt and hits[0].memory_id == acme_id
        assert (
            await memory._store.scalar(
                "SELECT COUNT(*) FROM memories WHERE model_id = ?", (embedder.model_id,)
            )
            == 51
        )


async def test_forget_removes_the_row_the_vector_and_says_so_in_events(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        acme_id = await _fill(memory)
        notes = memory.space("notes")
        assert await memory.wait_ready()
        before = len(memory._index)  # type: ignore[arg-type]
        forgotten = await notes.forget(acme_id, actor="console:op")
        assert forgotten.text == ACME
        assert len(memory._index) == before - 1  # type: ignore[arg-type]
        hits = (await notes.search("when does Acme want to be billed?")).hits
        assert acme_id not in [h.memory_id for h in hits]
        with pytest.raises(NotFoundError):
            await notes.forget(acme_id, actor="console:op")
        events = await EventLog(memory._store).query(kind="memory")
    deleted = [e for e in events if e.kind == "memory.deleted"]
    assert [e.subject for e in deleted] == [f"memory:{acme_id}"]
    assert deleted[0].actor == "console:op"
    assert deleted[0].payload["tier"] == "durable" and deleted[0].payload["reason"] == "forget"
    written = [e for e in events if e.kind == "memory.written"]
    assert len(written) == 51
    assert all("Acme" not in str(e.payload) for e in events)  # digests, never the text


async def test_an_agent_writes_only_its_own_namespace_and_reads_others_explicitly(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        notes, leads = memory.space("notes"), memory.space("leads")
        note, _ = await notes.remember(ACME, source_key="n1", actor="t")
        lead, _ = await leads.remember(
            "Acme is a warm lead for billing", source_key="l1", actor="t"
        )
        with pytest.raises(OwnershipError, match="belongs to 'notes'"):
            await leads.forget(note.id, actor="t")
        assert [h.memory_id for h in (await leads.search("Acme invoices")).hits] == [lead.id]
        both = await leads.search("Acme invoices", also=["notes"])
        assert {h.memory_id for h in both.hits} == {note.id, lead.id}
        assert await notes.count() == 1 and await leads.count() == 1


async def test_remember_is_idempotent_per_source_key(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    async with opened(tmp_path, embedder) as memory:
        notes = memory.space("notes")
        first, created = await notes.remember(ACME, source_key="task-1", actor="t")
        again, created_again = await notes.remember("other", source_key="task-1", actor="t")
        assert created and not created_again and again == first
        assert await notes.count() == 1
        assert len(await EventLog(memory._store).query(kind="memory.written")) == 1


async def test_working_memories_expire_unless_used_and_eviction_removes_them(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock()
    ttl = 3600.0
    # No relevance cutoff: "anything" must list every live memory.
    async with opened(
        tmp_path, embedder, clock, working_ttl_s=ttl, recall_min_score=-1.0
    ) as memory:
        notes = memory.space("notes")
        used, _ = await notes.remember(ACME, source_key="w1", actor="t", tier=Tier.WORKING)
        idle, _ = await notes.remember(UNRELATED[0], source_key="w2", actor="t", tier=Tier.WORKING)
        kept, _ = await notes.remember(UNRELATED[1], source_key="d1", actor="t")
        assert used.expires_at == clock.moment + timedelta(seconds=ttl)

        clock.moment += timedelta(seconds=ttl * 0.8)
        hits = (await notes.search("Acme billing", limit=1)).hits
        assert [(h.memory_id, h.tier) for h in hits] == [(used.id, Tier.WORKING)]  # refreshed

        clock.moment += timedelta(seconds=ttl * 0.5)  # idle is past its TTL, used is not
        ids = [h.memory_id for h in (await notes.search("anything", limit=10)).hits]
        assert idle.id not in ids and used.id in ids and kept.id in ids
        assert await memory.evict() == 1
        assert await notes.count() == 2
        assert len(memory._index) == 2  # type: ignore[arg-type]

        clock.moment += timedelta(seconds=ttl * 2)
        assert await memory.maintain() == 1
        assert [m.id for m in await notes.latest()] == [kept.id]
        expired = await EventLog(memory._store).query(kind="memory.deleted")
    assert [e.payload["reason"] for e in expired] == ["expired", "expired"]
    assert all(e.actor == "memory" and e.payload["tier"] == "working" for e in expired)


async def test_recent_turns_of_the_conversation_join_recall(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    # No relevance cutoff: which turns are kept is the point, not how relevant they are.
    async with opened(tmp_path, embedder, ephemeral_turns=2, recall_min_score=-1.0) as memory:
        notes = memory.space("notes")
        await notes.remember(UNRELATED[0], source_key="d1", actor="t")
        for turn in ["the parcel for Globex went out today", "old turn", "newest turn"]:
            notes.note_turn("console:local", turn, datetime.now(UTC))
        notes.note_turn("console:other", "the parcel for Globex is lost", datetime.now(UTC))
        recall = await notes.search("Globex parcel", conversation="console:local")
    tiers = [h.tier for h in recall.hits]
    assert Tier.EPHEMERAL in tiers and "the parcel" not in " ".join(
        h.text for h in recall.hits if h.tier is Tier.EPHEMERAL
    )  # only two turns are kept, and the other conversation's stay there


async def test_without_a_model_recall_falls_back_to_keywords(tmp_path: Path) -> None:
    broken = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
    async with opened(tmp_path, broken) as memory:
        notes = memory.space("notes")
        note, _ = await notes.remember(ACME, source_key="n1", actor="t")
        await notes.remember(UNRELATED[0], source_key="n2", actor="t")
        recall = await notes.search("Acme invoices")
    assert not recall.semantic
    assert [h.memory_id for h in recall.hits] == [note.id]


async def test_a_write_failure_while_preparing_is_retried_not_keyword_search_for_good(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Issue 10 item 7: fails on the old main (one failed preparation meant keyword
    search until restart)."""
    async with opened(tmp_path, embedder) as memory:
        acme_id = await _fill(memory)
    async with Store.open(tmp_path / "soloops.db") as store:
        # Rows without vectors (as after a model change), and the write of their vectors
        # fails (a real SQLite error from a trigger, as a full disk would raise one).
        async with store.write() as tx:
            await tx.execute("UPDATE memories SET embedding = NULL, model_id = NULL")
            await tx.execute(
                "CREATE TRIGGER fail_embedding BEFORE UPDATE OF embedding ON memories"
                " BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
            )
        (tmp_path / "memory.faiss").unlink(missing_ok=True)
        seen: list[tuple[float, str, bool, list[int | None]]] = []

        async def sleep(seconds: float) -> None:
            # Between attempts: /status says so and recall still answers, by keywords.
            recall = await memory.space("notes").search("Acme invoices")
            seen.append(
                (
                    seconds,
                    memory.state.describe(),
                    recall.semantic,
                    [hit.memory_id for hit in recall.hits],
                )
            )
            async with store.write() as tx:  # the disk has room again
                await tx.execute("DROP TRIGGER IF EXISTS fail_embedding")

        memory = SemanticMemory(
            store, EventLog(store), embedder, tmp_path / "memory.faiss", sleep=sleep
        )
        await memory.start()
        try:
            state = await asyncio.wait_for(memory.wait_state(["ready", "keyword"]), 300)
            assert state.phase == "ready" and state.attempt == 2
            [(delay, said, semantic, ids)] = seen
            assert delay == 1.0
            assert "preparing again after a write failure (attempt 2)" in said
            assert semantic is False and ids[0] == acme_id
            recall = await memory.space("notes").search("when does Acme want to be billed?")
            assert recall.semantic and recall.hits[0].memory_id == acme_id
            assert memory.state.describe() == "memory index: ready"
        finally:
            await memory.close()
