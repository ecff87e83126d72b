from __future__ import annotations

import io
from dataclasses import replace
from datetime import date
from decimal import Decimal

from pypdf import PdfReader

from agents.invoice_pdf import (
    DocumentLine,
    InvoiceDocument,
    Seller,
    payment_terms_text,
    pdf_sha256,
    render_invoice_pdf,
    unicode_font,
)

DOC = InvoiceDocument(
    number="INV-2026-0001",
    issue_date=date(2026, 11, 3),
    due_date=date(2026, 11, 17),
    seller=Seller(
        "Ada Consulting", "Hauptstr. 1\n10115 Berlin", "DE123456789", "IBAN DE89 3704 0044"
    ),
    buyer="Acme GmbH",
    buyer_email="billing@acme.com",
    currency="EUR",
    lines=(
        DocumentLine(
            "October consulting, Zürich", Decimal(1), Decimal("1200.00"), Decimal("1200.00")
        ),
        DocumentLine("Travel", Decimal(2), Decimal("120.00"), Decimal("240.00")),
    ),
    subtotal=Decimal("1440.00"),
    vat_rate=Decimal(19),
    vat=Decimal("273.60"),
    total=Decimal("1713.60"),
    payment_terms=payment_terms_text(date(2026, 11, 17), 14),
)


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_pdf_holds_everything_the_invoice_says() -> None:
    text = text_of(render_invoice_pdf(DOC))
    for expected in (
        "Invoice INV-2026-0001",
        "Issue date: 2026-11-03",
        "Due date: 2026-11-17",
        "Ada Consulting",
        "10115 Berlin",
        "Tax ID: DE123456789",
        "Acme GmbH",
        "billing@acme.com",
        "October consulting, Zürich 1 €1,200.00 €1,200.00",
        "Travel 2 €120.00 €240.00",
        "Subtotal €1,440.00",
        "VAT 19% €273.60",
        "Total €1,713.60",
        "Payable within 14 days, by 17 Nov 2026.",
        "Payment details: IBAN DE89 3704 0044",
    ):
        assert expected in text, expected


def test_same_invoice_same_bytes_and_hash() -> None:
    first, second = render_invoice_pdf(DOC), render_invoice_pdf(DOC)
    assert first == second
    assert pdf_sha256(first) == pdf_sha256(second)
    changed = render_invoice_pdf(replace(DOC, total=Decimal("1713.61")))
    assert pdf_sha256(changed) != pdf_sha256(first)


def test_locale_and_currency_formatting_reach_the_pdf() -> None:
    doc = replace(
        DOC,
        currency="JPY",
        locale="de_DE",
        lines=(DocumentLine("Beratung", Decimal(1), Decimal(120000), Decimal(120000)),),
        subtotal=Decimal(120000),
        vat_rate=None,
        vat=Decimal(0),
        total=Decimal(120000),
    )
    text = text_of(render_invoice_pdf(doc))
    assert "120.000\xa0¥" in text or "120.000 ¥" in text
    assert "VAT ¥" not in text


def test_a_unicode_font_is_available() -> None:
    # matplotlib (a dependency) ships DejaVu Sans; without it the core-font fallback
    # would print non-Western text as "?".
    assert unicode_font() is not None
