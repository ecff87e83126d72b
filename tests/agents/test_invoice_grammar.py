from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from agents.invoice_grammar import (
    DraftLine,
    InvoiceDraft,
    ListInvoices,
    MarkPaid,
    Refusal,
    ShowInvoice,
    VoidInvoice,
    parse_invoice,
    parse_invoices,
    recipient_for,
)

TODAY = date(2026, 11, 3)


def draft(text: str) -> InvoiceDraft:
    result = parse_invoice(text, today=TODAY)
    assert isinstance(result, InvoiceDraft), result
    return result


def refusal(text: str) -> str:
    result = parse_invoice(text, today=TODAY)
    assert isinstance(result, Refusal), result
    return result.message


def test_one_line_invoice_with_every_option() -> None:
    got = draft(
        "/invoice Acme 1200 EUR October consulting to billing@acme.com due in 14 days vat 19%"
    )
    assert got == InvoiceDraft(
        client="Acme",
        lines=(DraftLine("October consulting", Decimal(1), Decimal("1200.00"), "EUR"),),
        currency="EUR",
        recipient="billing@acme.com",
        due_days=14,
        vat_rate=Decimal(19),
        recurrence=None,
    )
    totals = got.totals()
    assert (totals.subtotal, totals.vat, totals.total) == (
        Decimal("1200.00"),
        Decimal("228.00"),
        Decimal("1428.00"),
    )


def test_options_are_optional_and_may_come_first() -> None:
    got = draft("/invoice Acme vat 7% due in 2 weeks 1200 EUR consulting")
    assert (got.vat_rate, got.due_days, got.recipient) == (Decimal(7), 14, None)
    assert draft("/invoice Acme 1200 EUR consulting").vat_rate is None


@pytest.mark.parametrize(
    "text",
    [
        "/invoice Acme\n2 days workshop 1600 EUR\ntravel 240 EUR",
        "/invoice Acme; 2 days workshop 1600 EUR; travel 240 EUR",
        "/invoice Acme; 2 days workshop 1600 EUR; travel 240",  # the currency is said once
    ],
)
def test_several_lines(text: str) -> None:
    got = draft(text)
    assert got.client == "Acme"
    assert [(line.description, line.amount) for line in got.lines] == [
        ("2 days workshop", Decimal("1600.00")),
        ("travel", Decimal("240.00")),
    ]
    assert got.totals().total == Decimal("1840.00")


def test_quantity_times_unit_price_and_other_spellings() -> None:
    got = draft("/invoice IBM 3 x 400 EUR design sprints")
    assert (got.client, got.lines[0].quantity, got.lines[0].amount) == (
        "IBM",
        Decimal(3),
        Decimal("1200.00"),
    )
    assert draft("/invoice Acme 3x 400 EUR design").lines[0].quantity == Decimal(3)
    assert draft("/invoice Acme EUR 1200 consulting").lines[0].unit_price == Decimal("1200.00")
    assert draft("/invoice Acme €1,200.50 consulting").lines[0].unit_price == Decimal("1200.50")
    assert draft("/invoice Acme 1200 eur consulting").currency == "EUR"
    assert draft("/invoice Studio 54 1200 EUR rent").client == "Studio 54"
    assert draft("/invoice Acme 1000 JPY x").lines[0].unit_price == Decimal(1000)


def test_recurring_invoice_keeps_the_phrase_for_the_scheduler() -> None:
    got = draft("/invoice Acme 500 EUR retainer every month on the 1st")
    assert got.recurrence == "every month on the 1st"
    assert got.lines[0].description == "retainer"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/invoice Acme 1200 EUX consulting", "Unknown currency 'EUX'.*1200 EUR"),
        ("/invoice Acme -500 EUR consulting", "negative"),
        ("/invoice Acme 2000000000 EUR consulting", "more than 1,000,000,000"),
        ("/invoice Acme 600000000 EUR a; b 600000000 EUR", "invoice total"),
        ("/invoice Acme 0 EUR consulting", "zero"),
        ("/invoice Acme consulting", "has no amount.*/invoice Acme 1200 EUR"),
        ("/invoice Acme 1200 consulting", "Say the currency after the amount"),
        ("/invoice Acme 1200 EUR", "Say what '1200 EUR' is for"),
        ("/invoice Acme; a 100 EUR; b 100 USD", "mixes EUR and USD"),
        ("/invoice Acme 100 EUR x to billing@acme", "'billing@acme' is not an email address"),
        ("/invoice 1200 EUR consulting", "Name the client first"),
        ("/invoice Acme 1200,50 EUR c", "decimal point.*1200.50"),
        ("/invoice Acme 1200 EUR c due in soon", "due in 14 days"),
        ("/invoice Acme 1200 EUR c due in 400 days", "more than a year"),
        ("/invoice Acme 1200 EUR c vat 150%", "vat 19%"),
        ("/invoice Acme; travel", "'travel' has no amount"),
        ("/invoice", "Write e.g. /invoice Acme"),
    ],
)
def test_bad_input_is_refused_with_what_to_type(text: str, message: str) -> None:

    assert re.search(message, refusal(text)), refusal(text)


def test_subcommands() -> None:
    assert parse_invoice("/invoice INV-2026-0001 paid", today=TODAY) == MarkPaid(
        "INV-2026-0001", TODAY
    )
    assert parse_invoice("/invoice inv-2026-7 paid 2026-10-01", today=TODAY) == MarkPaid(
        "INV-2026-0007", date(2026, 10, 1)
    )
    assert parse_invoice("/invoice 2026-0007 paid yesterday", today=TODAY) == MarkPaid(
        "INV-2026-0007", date(2026, 11, 2)
    )
    assert parse_invoice("/invoice INV-2026-0001 void", today=TODAY) == VoidInvoice("INV-2026-0001")
    assert parse_invoice("/invoice INV-2026-0001", today=TODAY) == ShowInvoice("INV-2026-0001")
    assert "in the future" in refusal("/invoice INV-2026-0001 paid 2027-01-01")
    assert "YYYY-MM-DD" in refusal("/invoice INV-2026-0001 paid 2026-02-30")
    assert "YYYY-MM-DD" in refusal("/invoice INV-2026-0001 paid last week")
    assert "void" in refusal("/invoice INV-2026-0001 cancel")


def test_listing() -> None:
    assert parse_invoices("/invoices") == ListInvoices("open")
    assert parse_invoices("/invoices Overdue") == ListInvoices("overdue")
    assert parse_invoices("/invoices paid") == ListInvoices("paid")
    bad = parse_invoices("/invoices late")
    assert isinstance(bad, Refusal) and "open | overdue | paid" in bad.message


def test_recipient_comes_from_the_line_or_the_known_contact() -> None:
    with_to = draft("/invoice Acme 1200 EUR consulting to billing@acme.com")
    without = draft("/invoice Acme 1200 EUR consulting")
    assert recipient_for(with_to, "other@acme.com") == "billing@acme.com"
    assert recipient_for(without, "jane@acme.com") == "jane@acme.com"
    missing = recipient_for(without, None)
    assert isinstance(missing, Refusal)
    assert "no email address for Acme" in missing.message and "to billing@" in missing.message
