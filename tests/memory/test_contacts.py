from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from memory.contacts import ContactRepo, LeadStage
from memory.errors import NotFoundError
from memory.events import EventLog
from memory.store import Store

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def repo(store: Store, events: EventLog) -> ContactRepo:
    return ContactRepo(store, events)


async def test_contacts_are_deduplicated_by_email_in_any_case(
    repo: ContactRepo, store: Store
) -> None:
    first, made = await repo.create_lead(
        source_key="m1",
        name="Jane Doe",
        email="jane@acme.com",
        company=None,
        note="wants a site",
        source="chat",
        now=NOW,
    )
    second, _ = await repo.create_lead(
        source_key="m2",
        name="J. Doe",
        email="Jane@ACME.com",
        company="Acme",
        note="also a shop",
        source="webform",
        now=NOW,
    )
    assert made and first.id != second.id
    assert first.contact_id == second.contact_id
    contact = await repo.contact_by_email("JANE@acme.COM")
    assert contact is not None
    assert (contact.name, contact.company) == ("Jane Doe", "Acme")  # company filled in
    assert await store.scalar("SELECT COUNT(*) FROM contacts") == 1
    assert [c.id for c in await repo.contact_by_name("acme")] == [contact.id]


async def test_a_rerun_with_the_same_source_key_creates_nothing(
    repo: ContactRepo, events: EventLog
) -> None:
    async def create() -> tuple[object, bool]:
        return await repo.create_lead(
            source_key="m1",
            name="Jane",
            email="jane@acme.com",
            company=None,
            note="n",
            source="chat",
            now=NOW,
        )

    lead, made = await create()
    again, made_again = await create()
    assert made and not made_again and again == lead
    assert len(await events.query(kind="lead.created")) == 1
    assert len(await events.query(kind="contact.created")) == 1


async def test_stage_changes_are_recorded_in_history_and_events(
    repo: ContactRepo, events: EventLog
) -> None:
    lead, _ = await repo.create_lead(
        source_key="m1",
        name="Jane",
        email="jane@acme.com",
        company=None,
        note="site",
        source="chat",
        now=NOW,
        value=Decimal("4800.00"),
        currency="EUR",
    )
    assert (lead.stage, lead.value, lead.currency) == (LeadStage.NEW, Decimal("4800.00"), "EUR")
    later = NOW + timedelta(days=1)
    moved = await repo.set_stage(lead.id, LeadStage.PROPOSAL, now=later, actor="op")
    assert moved.stage == LeadStage.PROPOSAL and moved.updated_at == later
    same = await repo.set_stage(lead.id, LeadStage.PROPOSAL, now=later, actor="op")
    assert same == moved  # no second history entry
    await repo.set_stage(lead.id, LeadStage.WON, now=later, actor="op")
    await repo.record(lead.id, "email", {"subject": "Hello"}, now=later, actor="followups")
    history = await repo.history(lead.id)
    assert [(h.kind, h.detail.get("to")) for h in history] == [
        ("created", None),
        ("stage", "proposal"),
        ("stage", "won"),
        ("email", None),
    ]
    assert history[1].detail == {"from": "new", "to": "proposal", "by": "op"}
    kinds = [e.kind for e in await events.query(kind="lead")]
    assert kinds == ["lead.created", "lead.stage", "lead.stage", "lead.email"]
    with pytest.raises(NotFoundError, match="no lead #99"):
        await repo.set_stage(99, LeadStage.WON, now=later, actor="op")
    with pytest.raises(NotFoundError, match="no lead #99"):
        await repo.record(99, "note", {}, now=later, actor="op")


async def test_listing_by_stage(repo: ContactRepo) -> None:
    ids = []
    for i, email in enumerate(["a@x.io", "b@x.io", "c@x.io"]):
        lead, _ = await repo.create_lead(
            source_key=f"m{i}",
            name=f"P{i}",
            email=email,
            company=None,
            note="",
            source="chat",
            now=NOW,
        )
        ids.append(lead.id)
    await repo.set_stage(ids[1], LeadStage.LOST, now=NOW, actor="op")
    assert [lead.id for lead in await repo.leads()] == [ids[0], ids[2]]
    assert [lead.id for lead in await repo.leads(LeadStage.LOST)] == [ids[1]]
    got = await repo.get_lead(ids[0])
    assert got is not None and got.email == "a@x.io"
    assert await repo.get_lead(999) is None
