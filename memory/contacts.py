"""Contacts and leads: who asked for what, and where each lead stands.

A contact is one person, deduplicated by email (case-insensitive). A lead is one
request from a contact, with a stage (new, contacted, proposal, won, lost), a source,
an optional value estimate (a decimal string and a currency, never a float) and a note.
Everything that happens to a lead (created, stage changes, emails, invoices, notes) is
a row of ``lead_history``; each write appends its event in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from memory.clock import from_iso, to_iso
from memory.errors import NotFoundError
from memory.events import EventLog
from memory.store import Store, Transaction


class LeadStage(StrEnum):
    """Where a lead is in the pipeline."""

    NEW = "new"
    CONTACTED = "contacted"
    PROPOSAL = "proposal"
    WON = "won"
    LOST = "lost"


OPEN_STAGES = frozenset({LeadStage.NEW, LeadStage.CONTACTED, LeadStage.PROPOSAL})


@dataclass(frozen=True, slots=True)
class Contact:
    """One person."""

    id: int
    name: str
    email: str | None
    company: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Lead:
    """One lead, with its contact's name and email for display."""

    id: int
    contact_id: int
    name: str
    email: str | None
    company: str | None
    stage: LeadStage
    source: str
    value: Decimal | None
    currency: str | None
    note: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One thing that happened to a lead."""

    lead_id: int
    at: datetime
    kind: str
    detail: dict[str, Any]


_LEAD_SELECT = (
    "SELECT l.*, c.name, c.email, c.company FROM leads l JOIN contacts c ON c.id = l.contact_id"
)


def _contact(row: Any) -> Contact:
    return Contact(
        id=int(row["id"]),
        name=row["name"],
        email=row["email"],
        company=row["company"],
        created_at=from_iso(row["created_at"]),
    )


def _lead(row: Any) -> Lead:
    return Lead(
        id=int(row["id"]),
        contact_id=int(row["contact_id"]),
        name=row["name"],
        email=row["email"],
        company=row["company"],
        stage=LeadStage(row["stage"]),
        source=row["source"],
        value=None if row["value_amount"] is None else Decimal(row["value_amount"]),
        currency=row["value_currency"],
        note=row["note"],
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )


class ContactRepo:
    """Contacts, leads and lead history over the store; every write logs its event."""

    def __init__(self, store: Store, events: EventLog) -> None:
        self._store = store
        self._events = events

    async def upsert_contact(
        self, tx: Transaction, *, name: str, email: str, company: str | None, now: datetime
    ) -> tuple[Contact, bool]:
        """Find the contact with ``email`` (any case) or create it; True when created.

        An existing contact keeps its name; a company is filled in if it had none.
        """
        created = await tx.execute(
            "INSERT OR IGNORE INTO contacts (name, email, company, created_at) VALUES (?, ?, ?, ?)",
            (name, email, company, to_iso(now)),
        )
        if not created and company:
            await tx.execute(
                "UPDATE contacts SET company = ? WHERE email = ? AND company IS NULL",
                (company, email),
            )
        row = await tx.fetchone("SELECT * FROM contacts WHERE email = ?", (email,))
        assert row is not None  # inserted or already there, inside this transaction
        contact = _contact(row)
        if created:
            await self._events.append(
                tx,
                "contact.created",
                actor="leads",
                subject=f"contact:{contact.id}",
                payload={"name": name, "email": email, "company": company},
            )
        return contact, created != 0

    async def create_lead(
        self,
        *,
        source_key: str,
        name: str,
        email: str,
        company: str | None,
        note: str,
        source: str,
        now: datetime,
        value: Decimal | None = None,
        currency: str | None = None,
    ) -> tuple[Lead, bool]:
        """Record a lead (and its contact) once per ``source_key``; True when created.

        A rerun with the same key (a resumed task, a redelivered web form) returns the
        lead it created the first time and writes nothing.
        """
        async with self._store.write() as tx:
            existing = await tx.fetchone(f"{_LEAD_SELECT} WHERE l.source_key = ?", (source_key,))
            if existing is not None:
                return _lead(existing), False
            contact, _ = await self.upsert_contact(
                tx, name=name, email=email, company=company, now=now
            )
            stamp = to_iso(now)
            lead_id = await tx.execute(
                "INSERT INTO leads (contact_id, stage, source, value_amount, value_currency,"
                " note, source_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    contact.id,
                    LeadStage.NEW,
                    source,
                    None if value is None else str(value),
                    currency,
                    note,
                    source_key,
                    stamp,
                    stamp,
                ),
            )
            detail = {"source": source, "note": note, "contact_id": contact.id}
            await self._history(tx, lead_id, "created", detail, now)
            await self._events.append(
                tx, "lead.created", actor="leads", subject=f"lead:{lead_id}", payload=detail
            )
            row = await tx.fetchone(f"{_LEAD_SELECT} WHERE l.id = ?", (lead_id,))
        assert row is not None
        return _lead(row), True

    async def set_stage(self, lead_id: int, stage: LeadStage, *, now: datetime, actor: str) -> Lead:
        """Move a lead to ``stage`` and record it; the same stage again changes nothing."""
        async with self._store.write() as tx:
            row = await tx.fetchone(f"{_LEAD_SELECT} WHERE l.id = ?", (lead_id,))
            if row is None:
                raise NotFoundError(f"there is no lead #{lead_id}; /leads lists them")
            before = LeadStage(row["stage"])
            if before == stage:
                return _lead(row)
            await tx.execute(
                "UPDATE leads SET stage = ?, updated_at = ? WHERE id = ?",
                (stage, to_iso(now), lead_id),
            )
            detail = {"from": before.value, "to": stage.value, "by": actor}
            await self._history(tx, lead_id, "stage", detail, now)
            await self._events.append(
                tx, "lead.stage", actor=actor, subject=f"lead:{lead_id}", payload=detail
            )
            row = await tx.fetchone(f"{_LEAD_SELECT} WHERE l.id = ?", (lead_id,))
        assert row is not None
        return _lead(row)

    async def record(
        self, lead_id: int, kind: str, detail: dict[str, Any], *, now: datetime, actor: str
    ) -> None:
        """Add a history entry (an email sent, an invoice, a note) with its event."""
        async with self._store.write() as tx:
            if await tx.fetchone("SELECT 1 FROM leads WHERE id = ?", (lead_id,)) is None:
                raise NotFoundError(f"there is no lead #{lead_id}; /leads lists them")
            await self._history(tx, lead_id, kind, detail, now)
            await self._events.append(
                tx, f"lead.{kind}", actor=actor, subject=f"lead:{lead_id}", payload=detail
            )

    async def get_lead(self, lead_id: int) -> Lead | None:
        """One lead, or None."""
        row = await self._store.fetchone(f"{_LEAD_SELECT} WHERE l.id = ?", (lead_id,))
        return None if row is None else _lead(row)

    async def leads(self, stage: LeadStage | None = None, limit: int = 200) -> list[Lead]:
        """Leads in ``stage``, or the open ones (new, contacted, proposal); oldest first."""
        stages = [stage] if stage is not None else sorted(OPEN_STAGES)
        marks = ",".join("?" * len(stages))
        rows = await self._store.fetchall(
            f"{_LEAD_SELECT} WHERE l.stage IN ({marks}) ORDER BY l.id LIMIT ?",
            (*stages, limit),
        )
        return [_lead(row) for row in rows]

    async def history(self, lead_id: int) -> list[HistoryEntry]:
        """Everything recorded about a lead, oldest first."""
        rows = await self._store.fetchall(
            "SELECT * FROM lead_history WHERE lead_id = ? ORDER BY id", (lead_id,)
        )
        return [
            HistoryEntry(
                lead_id=int(r["lead_id"]),
                at=from_iso(r["at"]),
                kind=r["kind"],
                detail=json.loads(r["detail"]),
            )
            for r in rows
        ]

    async def contact_by_email(self, email: str) -> Contact | None:
        """The contact with this email, in any letter case."""
        row = await self._store.fetchone("SELECT * FROM contacts WHERE email = ?", (email,))
        return None if row is None else _contact(row)

    async def contact_by_name(self, name: str) -> list[Contact]:
        """Contacts whose name or company is ``name`` (any case), for invoices by client."""
        rows = await self._store.fetchall(
            "SELECT * FROM contacts WHERE name = ? COLLATE NOCASE OR company = ? COLLATE NOCASE"
            " ORDER BY id",
            (name, name),
        )
        return [_contact(row) for row in rows]

    async def _history(
        self, tx: Transaction, lead_id: int, kind: str, detail: dict[str, Any], now: datetime
    ) -> None:
        await tx.execute(
            "INSERT INTO lead_history (lead_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (lead_id, to_iso(now), kind, json.dumps(detail, sort_keys=True)),
        )
