"""Invoices end to end on the console: a real runtime, a ManualClock, the SMTP sink,
real files. Invoice -> PDF on the card -> approve -> emailed with the PDF; overdue ->
staged reminders; paid -> no more; void -> cancellation; numbers without gaps;
recurring runs; bad input changes nothing."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from agents.invoice_pdf import pdf_sha256
from agents.invoices import without_recurrence
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import Settings
from memory.clock import ManualClock
from memory.contacts import ContactRepo
from memory.embedder import SentenceTransformerEmbedder
from tests.conftest import Chat
from tests.emulators.smtp import SmtpSink

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # Mon 09:00 in Berlin
SELLER = {
    "seller_name": "Solo Studio",
    "seller_address": "Hauptstr. 1\n10115 Berlin",
    "tax_id": "DE123456789",
    "payment_details": "IBAN DE02 1203 0000 0000 2020 51",
}
_CODE = re.compile(r"/approve (\w+)")


def _settings(home: Path, sink: SmtpSink | None, **invoices: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "timezone": "Europe/Berlin"}
    values["digest"] = {"enabled": False}  # these tests read every line said
    values["invoices"] = {**SELLER, **invoices}
    if sink is not None:
        values["email"] = sink.settings()
    return Settings.model_validate(values)


@asynccontextmanager
async def _chat(
    settings: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[Chat]:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], clock=clock, embedder=embedder
    ) as runtime:
        yield Chat(runtime, out)


def _code(said: str) -> str:
    found = _CODE.findall(said)
    assert found, said
    return str(found[-1])


def _card_code(said: str, marker: str) -> str:
    """The approve code of the card in ``said`` whose text contains ``marker``."""
    [card] = [c for c in said.split("Approval needed")[1:] if marker in c]
    return _code(card)


def _pdf_of(message: EmailMessage) -> bytes:
    [part] = list(message.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    content = part.get_content()
    assert isinstance(content, bytes)
    return content


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def _tick(chat: Chat, clock: ManualClock, to: datetime) -> str:
    """Move the clock, run what is due, return what was printed."""
    start = len(chat.out.getvalue())
    clock.set(to)
    await chat.runtime.scheduler.run_due()
    await chat.runtime.settle()
    return chat.out.getvalue()[start:]


async def _count(chat: Chat, sql: str) -> int:
    return int(await chat.runtime.store.scalar(sql))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def test_invoice_pdf_approve_email_reminders_paid(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with SmtpSink() as sink:
        settings = _settings(tmp_path / "home", sink)
        async with _chat(settings, clock, embedder) as chat:
            card = await chat.say(
                "/invoice Acme GmbH 1200 EUR October consulting; 2 x 150 EUR travel"
                " to billing@acme.test due in 14 days vat 19%"
            )
            # The PDF is shown with the card, before anything is sent.
            assert "Approval needed (invoices)" in card and "INV-2026-0001" in card
            shown = re.search(r"📎 INV-2026-0001\.pdf: (\S+)", card)
            assert shown is not None, card
            on_card = await asyncio.to_thread(Path(shown.group(1)).read_bytes)
            assert on_card.startswith(b"%PDF") and pdf_sha256(on_card)[:16] in card
            assert sink.messages == []

            sent = await chat.say(f"/approve {_code(card)}")
            assert "Sent INV-2026-0001 (€1,785.00) to billing@acme.test" in sent
            [mail] = sink.messages
            message = mail.message
            assert mail.rcpt_tos == ["billing@acme.test"]
            assert message["Subject"] == "Invoice INV-2026-0001 from Solo Studio"
            attached = _pdf_of(message)
            assert attached == on_card  # exactly what the card showed
            text = _pdf_text(attached)
            for expected in (
                "Invoice INV-2026-0001",
                "October consulting",
                "travel",
                "€1,200.00",
                "€300.00",
                "Subtotal",
                "€1,500.00",
                "VAT 19%",
                "€285.00",
                "Total",
                "€1,785.00",
                "Solo Studio",
                "Acme GmbH",
                "2026-11-16",
            ):
                assert expected in text, (expected, text)
            row = await chat.runtime.store.fetchone(
                "SELECT state, pdf_sha256 FROM invoices WHERE number = 'INV-2026-0001'"
            )
            assert row is not None and tuple(row) == ("sent", pdf_sha256(attached))

            # Due 16 Nov; three days later at 09:00 Berlin the daily check proposes the
            # friendly reminder (the days in between were missed: caught up once).
            said = await _tick(chat, clock, datetime(2026, 11, 19, 8, 0, tzinfo=UTC))
            assert "payment reminder 1/3 (friendly) for INV-2026-0001" in said, said
            assert "📎 INV-2026-0001.pdf" in said
            assert len(sink.messages) == 1
            done = await chat.say(f"/approve {_code(said)}")
            assert "Payment reminder 1 for INV-2026-0001 sent." in done
            assert len(sink.messages) == 2
            reminder = sink.messages[1].message
            assert reminder["Subject"] == "Friendly reminder: invoice INV-2026-0001 is due"
            assert "€1,785.00" in reminder.get_body(("plain",)).get_content()  # type: ignore[union-attr]  # a text body exists

            # The next day nothing new: stage 1 is recorded and stage 2 is at 10 days.
            said = await _tick(chat, clock, datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
            assert "payment reminder" not in said and "Approval needed" not in said

            listed = await chat.say("/invoices overdue")
            assert "INV-2026-0001 · Acme GmbH · €1,785.00 · 4 days overdue" in listed
            agent = chat.runtime.coordinator._agents["invoices"]  # the digest's hook
            lines = await agent.due_lines(clock.now(), timedelta(days=7))  # type: ignore[attr-defined]  # the invoices agent's own method
            assert lines == ["Invoice INV-2026-0001 (Acme GmbH, €1,785.00) is 4 days overdue"]

            paid = await chat.say("/invoice INV-2026-0001 paid 2026-11-20")
            assert "INV-2026-0001 is paid (2026-11-20)" in paid
            # Past the 10- and 20-day stages: no more reminders, no more cards.
            for day in (26, 30):
                said = await _tick(chat, clock, datetime(2026, 11, day, 8, 0, tzinfo=UTC))
                assert "payment reminder" not in said and "Approval needed" not in said
            said = await _tick(chat, clock, datetime(2026, 12, 7, 8, 0, tzinfo=UTC))
            assert "payment reminder" not in said and "Approval needed" not in said
            assert len(sink.messages) == 2
            assert await _count(chat, "SELECT COUNT(*) FROM approvals WHERE state='pending'") == 0
            checks = "SELECT COUNT(*) FROM tasks WHERE kind='invoice_reminders'"
            assert await _count(chat, checks) >= 5  # the daily check did run each time
            shown_again = await chat.say("/invoice INV-2026-0001")
            assert "paid 2026-11-20" in shown_again and "📎 INV-2026-0001.pdf" in shown_again


async def test_stages_go_on_while_unpaid_and_catch_up_once(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with SmtpSink() as sink:
        settings = _settings(tmp_path / "home", sink)
        async with _chat(settings, clock, embedder) as chat:
            card = await chat.say("/invoice Initech 800 EUR audit to ap@initech.test")
            await chat.say(f"/approve {_code(card)}")  # due 16 Nov (14 days by default)
            said = await _tick(chat, clock, datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
            # Down until 11 days after due: one reminder, the firm one, not two.
            assert said.count("Approval needed") == 1
            assert "payment reminder 2/3 (firm)" in said and "caught up" in said
            await chat.say(f"/approve {_code(said)}")
            said = await _tick(chat, clock, datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
            assert "payment reminder 3/3 (final)" in said
            await chat.say(f"/reject {_code(said)}")
            subjects = [m.message["Subject"] for m in sink.messages]
            assert subjects == [
                "Invoice INV-2026-0001 from Solo Studio",
                "Second reminder: invoice INV-2026-0001 is 11 days overdue",
            ]


async def test_void_sends_a_cancellation_and_numbers_never_gap_or_repeat(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with SmtpSink() as sink:
        settings = _settings(tmp_path / "home", sink)
        async with _chat(settings, clock, embedder) as chat:
            card = await chat.say("/invoice Acme 1200 EUR consulting to billing@acme.test")
            await chat.say(f"/approve {_code(card)}")
            card = await chat.say("/invoice INV-2026-0001 void")
            assert "cancellation of INV-2026-0001" in card
            voided = await chat.say(f"/approve {_code(card)}")
            assert "INV-2026-0001 is void" in voided
            cancel = sink.messages[-1].message
            assert cancel["Subject"] == "Cancellation of invoice INV-2026-0001"
            assert not list(cancel.iter_attachments())

            card = await chat.say("/invoice Globex 300 USD audit to ops@globex.test")
            assert "INV-2026-0002" in card
            rejected = await chat.say(f"/reject {_code(card)}")
            assert "INV-2026-0002 is void, and its number stays used" in rejected
            card = await chat.say("/invoice Globex 300 USD audit to ops@globex.test")
            assert "INV-2026-0003" in card
            await chat.say(f"/approve {_code(card)}")

            rows = await chat.runtime.store.fetchall(
                "SELECT number, state FROM invoices ORDER BY seq"
            )
            assert [tuple(r) for r in rows] == [
                ("INV-2026-0001", "void"),
                ("INV-2026-0002", "void"),
                ("INV-2026-0003", "sent"),
            ]
            assert len(sink.messages) == 3  # invoice 1, its cancellation, invoice 3
            assert "already" not in await chat.say("/invoices all")
            again = await chat.say("/invoice INV-2026-0001 void")
            assert "INV-2026-0001 is void; it cannot be voided" in again


async def test_a_recurring_invoice_issues_one_per_run(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(datetime(2026, 1, 15, 9, 0, tzinfo=UTC))
    async with SmtpSink() as sink:
        settings = _settings(tmp_path / "home", sink)
        async with _chat(settings, clock, embedder) as chat:
            said = await chat.say(
                "/invoice Acme 500 EUR retainer every month on the 1st to billing@acme.test"
            )
            assert "Recurring invoice for Acme (€500.00) set: every month on the 1st" in said
            assert "Next: 2026-02-01 00:00 Europe/Berlin" in said
            assert await _count(chat, "SELECT COUNT(*) FROM invoices") == 0
            numbers = []
            for month in (2, 3):
                first = datetime(2026, month, 1, tzinfo=UTC) - timedelta(hours=1)  # 00:00 CET
                card = await _tick(chat, clock, first)
                found = re.search(r"Email invoice (INV-2026-\d{4})", card)
                assert found is not None, card
                numbers.append(found.group(1))
                await chat.say(f"/approve {_card_code(card, 'Email invoice')}")
            assert numbers == ["INV-2026-0001", "INV-2026-0002"]
            rows = await chat.runtime.store.fetchall(
                "SELECT issue_date, total, state FROM invoices ORDER BY seq"
            )
            assert [tuple(r) for r in rows] == [
                ("2026-02-01", "500.00", "sent"),
                ("2026-03-01", "500.00", "sent"),
            ]
            assert [m.message["Subject"] for m in sink.messages] == [
                "Invoice INV-2026-0001 from Solo Studio",
                "Invoice INV-2026-0002 from Solo Studio",
            ]
            bad = await chat.say("/invoice Acme 500 EUR retainer every blue moon to a@acme.test")
            assert "cannot read 'every blue moon' as a schedule" in bad


def test_the_recurring_text_drops_only_its_schedule() -> None:
    every = "every month on the 1st"
    assert (
        without_recurrence(f"Acme 500 EUR retainer {every} to a@b.test vat 19%", every)
        == "Acme 500 EUR retainer to a@b.test vat 19%"
    )
    assert without_recurrence("Acme; retainer 500 EUR Every  Month on the 1st; x 5 EUR", every) == (
        "Acme; retainer 500 EUR; x 5 EUR"
    )
    assert without_recurrence("Acme 5 EUR every month to a@b.test on the 1st", every) is None


async def test_bad_input_is_a_clear_reply_and_stores_nothing(
    tmp_path: Path, clock: ManualClock, embedder: SentenceTransformerEmbedder
) -> None:
    async with SmtpSink() as sink:
        settings = _settings(tmp_path / "home", sink)
        async with _chat(settings, clock, embedder) as chat:
            cases = {
                "/invoice Acme 1200 EUX consulting to a@acme.test": "Unknown currency 'EUX'",
                "/invoice Acme -5 EUR consulting to a@acme.test": "is negative",
                "/invoice Acme 5000000000 EUR consulting to a@acme.test": "is more than",
                "/invoice Nobody 100 EUR work": "I have no email address for Nobody",
                "/invoice INV-2026-0009 paid": "There is no invoice INV-2026-0009",
                "/invoices later": "Write /invoices, or /invoices open",
            }
            for text, expected in cases.items():
                said = await chat.say(text)
                assert expected in said, (text, said)
                assert "Traceback" not in said
            assert await _count(chat, "SELECT COUNT(*) FROM invoices") == 0
            assert await _count(chat, "SELECT COUNT(*) FROM invoice_counters") == 0
            refused = "SELECT COUNT(*) FROM events WHERE kind = 'task.refused'"
            assert await _count(chat, refused) == len(cases)

            # A known contact's email is used when no address is given.
            contacts = ContactRepo(chat.runtime.store, chat.runtime.events)
            async with chat.runtime.store.write() as tx:
                await contacts.upsert_contact(
                    tx, name="Jane Doe", email="jane@initech.test", company="Initech", now=START
                )
            card = await chat.say("/invoice Initech 100 EUR workshop")
            assert "INV-2026-0001 to jane@initech.test" in card
    # Without a seller name, or without email, a reply names what to set.
    async with _chat(_settings(tmp_path / "h2", sink, seller_name=""), clock, embedder) as chat:
        said = await chat.say("/invoice Acme 100 EUR work to a@acme.test")
        assert "SOLOOPS_INVOICES__SELLER_NAME" in said
        assert await _count(chat, "SELECT COUNT(*) FROM invoices") == 0
    async with _chat(_settings(tmp_path / "h3", None), clock, embedder) as chat:
        said = await chat.say("/invoice Acme 100 EUR work to a@acme.test")
        assert "SOLOOPS_EMAIL__HOST" in said
        assert await _count(chat, "SELECT COUNT(*) FROM invoices") == 0
        assert date(2026, 11, 2) == clock.now().date()
