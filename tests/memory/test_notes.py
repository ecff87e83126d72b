from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memory.notes import NotesRepo, fts_query
from memory.store import Store


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme", '"acme"*'),
        ("what did Acme say about billing?", '"acme"* OR "about"* OR "billing"*'),
        ('he said "NEAR" * OR -', '"he"* OR "near"*'),
        ("???", None),
        ("the", '"the"*'),
    ],
)
def test_fts_query_is_safe_and_useful(text: str, expected: str | None) -> None:
    assert fts_query(text) == expected


async def test_search_ranks_and_is_idempotent_per_key(store: Store) -> None:
    repo = NotesRepo(store)
    now = datetime.now(UTC)
    async with store.write() as tx:
        first, created = await repo.add(
            tx, text="Acme pays invoices on the 1st", source_key="a", now=now
        )
        again, created_again = await repo.add(tx, text="different", source_key="a", now=now)
        await repo.add(tx, text="Bob likes invoices by email", source_key="b", now=now)
        await repo.add(tx, text="Lunch with Carol", source_key="c", now=now)
    assert created and not created_again
    assert again.id == first.id and again.text == first.text
    found = await repo.search("acme invoices")
    assert [n.text for n in found][:2] == [
        "Acme pays invoices on the 1st",
        "Bob likes invoices by email",
    ]
    assert await repo.search("zebra") == []
    async with store.write() as tx:
        assert await repo.delete(tx, first.id) is not None
        assert await repo.delete(tx, first.id) is None
    assert [n.text for n in await repo.search("acme")] == []
