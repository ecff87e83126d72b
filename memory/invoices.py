"""Invoices and their gap-free numbers.

Numbering: ``INV-<year>-<seq>``, ``seq`` counting from 1 in each year of the issue
date. The counter row (``invoice_counters``) is bumped in the same write transaction
that inserts the invoice row, so either both commit or neither does: a crash or an
error before the commit leaves no gap, and a committed number belongs to exactly one
invoice for good (voiding keeps it; a trigger refuses deletes and renumbering). The
transaction is keyed by the caller's idempotency key (the task's), so a rerun after a
crash returns the invoice and number it created the first time.

States: draft -> proposed -> sent -> paid, and void from draft, proposed or sent
(voiding a sent invoice is the compensation of sending it; paid and void are final).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.errors import MemoryError_, NotFoundError
from memory.events import EventLog
from memory.store import Store


class InvoiceState(StrEnum):
    """Where an invoice is in its life."""

    DRAFT = "draft"
    PROPOSED = "proposed"
    SENT = "sent"
    PAID = "paid"
    VOID = "void"


INVOICE_MOVES: dict[InvoiceState, frozenset[InvoiceState]] = {
    InvoiceState.DRAFT: frozenset({InvoiceState.PROPOSED, InvoiceState.VOID}),
    InvoiceState.PROPOSED: frozenset({InvoiceState.SENT, InvoiceState.VOID}),
    InvoiceState.SENT: frozenset({InvoiceState.PAID, InvoiceState.VOID}),
    InvoiceState.PAID: frozenset(),
    InvoiceState.VOID: frozenset(),
}
"""Which state may follow which."""

OPEN_STATES = frozenset({InvoiceState.DRAFT, InvoiceState.PROPOSED, InvoiceState.SENT})


class InvoiceMoveError(MemoryError_):
    """The invoice cannot go to that state from where it is (e.g. paid -> void)."""


@dataclass(frozen=True, slots=True)
class StoredLine:
    """One line as stored: decimals kept as exact strings in JSON."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """What the caller has decided; the repository adds the number."""

    client: str
    recipient: str | None
    currency: str
    lines: tuple[StoredLine, ...]
    subtotal: Decimal
    vat: Decimal
    total: Decimal
    vat_rate: Decimal | None
    issue_date: date
    due_date: date
    recurrence: str | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    """One stored invoice."""

    id: int
    number: str
    year: int
    seq: int
    client: str
    recipient: str | None
    currency: str
    lines: tuple[StoredLine, ...]
    subtotal: Decimal
    vat: Decimal
    total: Decimal
    vat_rate: Decimal | None
    issue_date: date
    due_date: date
    state: InvoiceState
    paid_at: date | None
    pdf_sha256: str | None
    idempotency_key: str
    recurrence: str | None
    reminders_sent: int
    created_at: datetime
    updated_at: datetime


def format_number(year: int, seq: int) -> str:
    """``INV-2026-0001``."""
    return f"INV-{year:04d}-{seq:04d}"


def _lines_json(lines: tuple[StoredLine, ...]) -> str:
    return json.dumps(
        [
            {
                "description": line.description,
                "quantity": str(line.quantity),
                "unit_price": str(line.unit_price),
                "amount": str(line.amount),
            }
            for line in lines
        ]
    )


def _invoice(row: Any) -> Invoice:
    lines = tuple(
        StoredLine(
            description=item["description"],
            quantity=Decimal(item["quantity"]),
            unit_price=Decimal(item["unit_price"]),
            amount=Decimal(item["amount"]),
        )
        for item in json.loads(row["lines"])
    )
    return Invoice(
        id=int(row["id"]),
        number=row["number"],
        year=int(row["year"]),
        seq=int(row["seq"]),
        client=row["client"],
        recipient=row["recipient"],
        currency=row["currency"],
        lines=lines,
        subtotal=Decimal(row["subtotal"]),
        vat=Decimal(row["vat"]),
        total=Decimal(row["total"]),
        vat_rate=None if row["vat_rate"] is None else Decimal(row["vat_rate"]),
        issue_date=date.fromisoformat(row["issue_date"]),
        due_date=date.fromisoformat(row["due_date"]),
        state=InvoiceState(row["state"]),
        paid_at=None if row["paid_at"] is None else date.fromisoformat(row["paid_at"]),
        pdf_sha256=row["pdf_sha256"],
        idempotency_key=row["idempotency_key"],
        recurrence=row["recurrence"],
        reminders_sent=int(row["reminders_sent"]),
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )


class InvoiceRepo:
    """Invoices over the store; every write appends its event in the same transaction."""

    def __init__(self, store: Store, events: EventLog) -> None:
        self._store = store
        self._events = events

    async def create(
        self, new: NewInvoice, *, idempotency_key: str, now: datetime, actor: str = "invoices"
    ) -> tuple[Invoice, bool]:
        """Number and store a draft invoice once per key; True when created now."""
        async with self._store.write() as tx:
            row = await tx.fetchone(
                "SELECT * FROM invoices WHERE idempotency_key = ?", (idempotency_key,)
            )
            if row is not None:
                return _invoice(row), False
            year = new.issue_date.year
            counter = await tx.fetchone(
                "INSERT INTO invoice_counters (year, last) VALUES (?, 1)"
                " ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
                (year,),
            )
            assert counter is not None  # RETURNING always yields the row it wrote
            seq = int(counter["last"])
            number = format_number(year, seq)
            stamp = to_iso(now)
            invoice_id = await tx.execute(
                "INSERT INTO invoices (number, year, seq, client, recipient, currency, lines,"
                " subtotal, vat, total, vat_rate, issue_date, due_date, state,"
                " idempotency_key, recurrence, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    year,
                    seq,
                    new.client,
                    new.recipient,
                    new.currency,
                    _lines_json(new.lines),
                    str(new.subtotal),
                    str(new.vat),
                    str(new.total),
                    None if new.vat_rate is None else str(new.vat_rate),
                    new.issue_date.isoformat(),
                    new.due_date.isoformat(),
                    InvoiceState.DRAFT,
                    idempotency_key,
                    new.recurrence,
                    stamp,
                    stamp,
                ),
            )
            await self._events.append(
                tx,
                "invoice.created",
                actor=actor,
                subject=number,
                payload={
                    "id": invoice_id,
                    "client": new.client,
                    "total": str(new.total),
                    "currency": new.currency,
                    "key": idempotency_key,
                },
            )
            row = await tx.fetchone("SELECT * FROM invoices WHERE id = ?", (invoice_id,))
        assert row is not None
        return _invoice(row), True

    async def move(
        self,
        number: str,
        to: InvoiceState,
        *,
        now: datetime,
        actor: str,
        paid_on: date | None = None,
        pdf_sha256: str | None = None,
    ) -> Invoice:
        """Move an invoice to ``to`` (checked against :data:`INVOICE_MOVES`).

        Moving to the state it is already in returns it unchanged (a rerun). Raises
        NotFoundError for an unknown number and InvoiceMoveError for a move the table
        does not allow. ``pdf_sha256`` records the rendered PDF (on proposing).
        """
        async with self._store.write() as tx:
            row = await tx.fetchone("SELECT * FROM invoices WHERE number = ?", (number,))
            if row is None:
                raise NotFoundError(f"there is no invoice {number}; /invoices all lists them")
            current = InvoiceState(row["state"])
            if current == to:
                return _invoice(row)
            if to not in INVOICE_MOVES[current]:
                raise InvoiceMoveError(f"{number} is {current.value} and cannot become {to.value}")
            await tx.execute(
                "UPDATE invoices SET state = ?, updated_at = ?,"
                " paid_at = COALESCE(?, paid_at), pdf_sha256 = COALESCE(?, pdf_sha256)"
                " WHERE id = ? AND state = ?",
                (
                    to,
                    to_iso(now),
                    None if paid_on is None else paid_on.isoformat(),
                    pdf_sha256,
                    row["id"],
                    current,
                ),
            )
            payload: dict[str, Any] = {"from": current.value, "to": to.value}
            if paid_on is not None:
                payload["paid_on"] = paid_on.isoformat()
            if pdf_sha256 is not None:
                payload["pdf_sha256"] = pdf_sha256
            await self._events.append(
                tx, f"invoice.{to.value}", actor=actor, subject=number, payload=payload
            )
            row = await tx.fetchone("SELECT * FROM invoices WHERE id = ?", (row["id"],))
        assert row is not None
        return _invoice(row)

    async def record_reminder(self, number: str, stage: int, *, now: datetime) -> bool:
        """Record that reminder ``stage`` (1-based) went out; False if already recorded.

        Conditional on the invoice still being sent and on a lower stage count, so two
        racing runs record one reminder, and none is recorded after it was paid.
        """
        async with self._store.write() as tx:
            changed = await tx.execute(
                "UPDATE invoices SET reminders_sent = ?, updated_at = ?"
                " WHERE number = ? AND state = ? AND reminders_sent < ?",
                (stage, to_iso(now), number, InvoiceState.SENT, stage),
            )
            if changed:
                await self._events.append(
                    tx,
                    "invoice.reminded",
                    actor="invoices",
                    subject=number,
                    payload={"stage": stage},
                )
        return changed == 1

    async def get(self, number: str) -> Invoice | None:
        """The invoice with this number, or None."""
        row = await self._store.fetchone("SELECT * FROM invoices WHERE number = ?", (number,))
        return None if row is None else _invoice(row)

    async def by_key(self, idempotency_key: str) -> Invoice | None:
        """The invoice a task created, or None."""
        row = await self._store.fetchone(
            "SELECT * FROM invoices WHERE idempotency_key = ?", (idempotency_key,)
        )
        return None if row is None else _invoice(row)

    async def in_states(self, states: frozenset[InvoiceState], limit: int = 500) -> list[Invoice]:
        """Invoices in any of ``states``, by number."""
        ordered = sorted(states)
        marks = ",".join("?" * len(ordered))
        rows = await self._store.fetchall(
            f"SELECT * FROM invoices WHERE state IN ({marks}) ORDER BY year, seq LIMIT ?",
            (*ordered, limit),
        )
        return [_invoice(row) for row in rows]

    async def overdue(self, today: date, limit: int = 500) -> list[Invoice]:
        """Sent invoices whose due date is before ``today``, oldest due first."""
        rows = await self._store.fetchall(
            "SELECT * FROM invoices WHERE state = ? AND due_date < ?"
            " ORDER BY due_date, year, seq LIMIT ?",
            (InvoiceState.SENT, today.isoformat(), limit),
        )
        return [_invoice(row) for row in rows]

    async def last_numbers(self) -> dict[int, int]:
        """The last number issued in each year (for checks and the crash harness)."""
        rows = await self._store.fetchall("SELECT year, last FROM invoice_counters")
        return {int(r["year"]): int(r["last"]) for r in rows}
