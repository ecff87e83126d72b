from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from memory.errors import NotFoundError
from memory.events import EventLog
from memory.invoices import (
    InvoiceMoveError,
    InvoiceRepo,
    InvoiceState,
    NewInvoice,
    StoredLine,
    format_number,
)
from memory.store import Store

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def new(issued: date = date(2026, 11, 3), client: str = "Acme") -> NewInvoice:
    return NewInvoice(
        client=client,
        recipient="billing@acme.com",
        currency="EUR",
        lines=(StoredLine("Consulting", Decimal(1), Decimal("1200.00"), Decimal("1200.00")),),
        subtotal=Decimal("1200.00"),
        vat=Decimal("228.00"),
        total=Decimal("1428.00"),
        vat_rate=Decimal(19),
        issue_date=issued,
        due_date=date(2026, 11, 17),
    )


@pytest.fixture
def repo(store: Store, events: EventLog) -> InvoiceRepo:
    return InvoiceRepo(store, events)


async def test_numbers_count_per_year_without_gaps(repo: InvoiceRepo) -> None:
    a, _ = await repo.create(new(date(2026, 12, 30)), idempotency_key="a", now=NOW)
    b, _ = await repo.create(new(date(2026, 12, 31)), idempotency_key="b", now=NOW)
    c, _ = await repo.create(new(date(2027, 1, 2)), idempotency_key="c", now=NOW)
    d, _ = await repo.create(new(date(2027, 1, 3)), idempotency_key="d", now=NOW)
    assert [x.number for x in (a, b, c, d)] == [
        "INV-2026-0001",
        "INV-2026-0002",
        "INV-2027-0001",
        "INV-2027-0002",
    ]
    assert await repo.last_numbers() == {2026: 2, 2027: 2}
    assert format_number(2026, 12345) == "INV-2026-12345"


async def test_a_rerun_with_the_same_key_gets_the_same_invoice(
    repo: InvoiceRepo, events: EventLog
) -> None:
    first, created = await repo.create(new(), idempotency_key="task-7", now=NOW)
    again, created_again = await repo.create(new(client="Other"), idempotency_key="task-7", now=NOW)
    assert created and not created_again
    assert again == first
    nxt, _ = await repo.create(new(), idempotency_key="task-8", now=NOW)
    assert nxt.number == "INV-2026-0002"
    assert [e.subject for e in await events.query(kind="invoice.created")] == [
        "INV-2026-0001",
        "INV-2026-0002",
    ]


async def test_a_failed_transaction_leaves_no_gap(store: Store, repo: InvoiceRepo) -> None:
    await repo.create(new(), idempotency_key="a", now=NOW)
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.execute("UPDATE invoice_counters SET last = last + 1 WHERE year = 2026")
            raise RuntimeError("crash between numbering and the row")
    b, _ = await repo.create(new(), idempotency_key="b", now=NOW)
    assert b.number == "INV-2026-0002"


async def test_void_keeps_the_number_used(store: Store, repo: InvoiceRepo) -> None:
    a, _ = await repo.create(new(), idempotency_key="a", now=NOW)
    await repo.move(a.number, InvoiceState.PROPOSED, now=NOW, actor="op", pdf_sha256="ab" * 32)
    await repo.move(a.number, InvoiceState.SENT, now=NOW, actor="op")
    voided = await repo.move(a.number, InvoiceState.VOID, now=NOW, actor="op")
    assert (voided.state, voided.pdf_sha256) == (InvoiceState.VOID, "ab" * 32)
    b, _ = await repo.create(new(), idempotency_key="b", now=NOW)
    assert b.number == "INV-2026-0002"
    with pytest.raises(Exception, match="never reused"):
        async with store.write() as tx:
            await tx.execute("DELETE FROM invoices WHERE number = ?", (a.number,))
    with pytest.raises(Exception, match="keeps its number"):
        async with store.write() as tx:
            await tx.execute("UPDATE invoices SET number = 'INV-2026-0009' WHERE id = ?", (a.id,))


async def test_two_concurrent_creators_get_consecutive_distinct_numbers(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with Store.open(path) as one, Store.open(path) as two:
        repos = [InvoiceRepo(one, EventLog(one)), InvoiceRepo(two, EventLog(two))]
        made = await asyncio.gather(
            *(repos[i % 2].create(new(), idempotency_key=f"k{i}", now=NOW) for i in range(10))
        )
        numbers = sorted(invoice.number for invoice, _ in made)
        assert numbers == [format_number(2026, n) for n in range(1, 11)]
        assert (await EventLog(one).verify()).first_bad_seq is None


async def test_state_moves_follow_the_table(repo: InvoiceRepo, events: EventLog) -> None:
    a, _ = await repo.create(new(), idempotency_key="a", now=NOW)
    with pytest.raises(InvoiceMoveError, match="draft and cannot become paid"):
        await repo.move(a.number, InvoiceState.PAID, now=NOW, actor="op")
    await repo.move(a.number, InvoiceState.PROPOSED, now=NOW, actor="op")
    await repo.move(a.number, InvoiceState.SENT, now=NOW, actor="op")
    paid = await repo.move(
        a.number, InvoiceState.PAID, now=NOW, actor="op", paid_on=date(2026, 11, 10)
    )
    assert (paid.state, paid.paid_at) == (InvoiceState.PAID, date(2026, 11, 10))
    assert await repo.move(a.number, InvoiceState.PAID, now=NOW, actor="op") == paid  # a rerun
    with pytest.raises(InvoiceMoveError, match="paid and cannot become void"):
        await repo.move(a.number, InvoiceState.VOID, now=NOW, actor="op")
    with pytest.raises(NotFoundError, match="no invoice INV-2026-0099"):
        await repo.move("INV-2026-0099", InvoiceState.VOID, now=NOW, actor="op")
    kinds = [e.kind for e in await events.query(kind="invoice")]
    assert kinds == ["invoice.created", "invoice.proposed", "invoice.sent", "invoice.paid"]


async def test_lines_and_amounts_round_trip_as_exact_decimals(repo: InvoiceRepo) -> None:
    a, _ = await repo.create(new(), idempotency_key="a", now=NOW)
    got = await repo.get(a.number)
    assert got is not None and got == a
    assert got.lines[0].amount == Decimal("1200.00") and str(got.total) == "1428.00"
    assert got.vat_rate == Decimal(19)
    assert await repo.by_key("a") == a and await repo.get("INV-1999-0001") is None


async def test_overdue_and_reminders(repo: InvoiceRepo) -> None:
    a, _ = await repo.create(new(), idempotency_key="a", now=NOW)
    b, _ = await repo.create(new(), idempotency_key="b", now=NOW)
    for number in (a.number, b.number):
        await repo.move(number, InvoiceState.PROPOSED, now=NOW, actor="op")
        await repo.move(number, InvoiceState.SENT, now=NOW, actor="op")
    await repo.move(b.number, InvoiceState.PAID, now=NOW, actor="op", paid_on=date(2026, 11, 5))
    assert await repo.overdue(date(2026, 11, 17)) == []
    assert [i.number for i in await repo.overdue(date(2026, 11, 20))] == [a.number]
    assert await repo.record_reminder(a.number, 1, now=NOW)
    assert not await repo.record_reminder(a.number, 1, now=NOW)  # once
    assert not await repo.record_reminder(b.number, 1, now=NOW)  # paid: none
    got = await repo.get(a.number)
    assert got is not None and got.reminders_sent == 1
    opened = await repo.in_states(frozenset({InvoiceState.SENT}))
    assert [i.number for i in opened] == [a.number]
