"""Render an invoice as a PDF with fpdf2. Pure: data in, bytes out.

Why fpdf2: pure Python, no system libraries (reportlab's optional C parts and
WeasyPrint's Pango/Cairo are what we avoid), and TrueType embedding for Unicode text.
fpdf2 ships no TTF of its own, so the DejaVu Sans that matplotlib (a soloops
dependency) ships is used, found without importing matplotlib; the system's DejaVu is
tried too. Without either, the built-in Helvetica is used with the cp1252 encoding
(the euro sign works; characters outside Western European scripts print as "?").

Output is deterministic: the creation date is fixed to the issue date and the file id
is derived from the content, so the same invoice renders to the same bytes and the
approval can bind :func:`pdf_sha256` of exactly what will be sent.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from agents.money import format_money

_SYSTEM_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)


@dataclass(frozen=True, slots=True)
class Seller:
    """Who issues the invoice (from ``SOLOOPS_INVOICES__*``)."""

    name: str
    address: str = ""
    tax_id: str = ""
    payment_details: str = ""


@dataclass(frozen=True, slots=True)
class DocumentLine:
    """One printed line."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """Everything printed on one invoice."""

    number: str
    issue_date: date
    due_date: date
    seller: Seller
    buyer: str
    buyer_email: str | None
    currency: str
    lines: Sequence[DocumentLine]
    subtotal: Decimal
    vat_rate: Decimal | None
    vat: Decimal
    total: Decimal
    payment_terms: str
    locale: str = "en"


@cache
def unicode_font() -> Path | None:
    """The DejaVu Sans TTF to embed, or None (core Helvetica is used then)."""
    spec = importlib.util.find_spec("matplotlib")
    for root in spec.submodule_search_locations or [] if spec else []:
        candidate = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if candidate.is_file():
            return candidate
    return next((path for path in _SYSTEM_FONTS if path.is_file()), None)


def pdf_sha256(data: bytes) -> str:
    """The hash an approval binds."""
    return hashlib.sha256(data).hexdigest()


def payment_terms_text(due_date: date, days: int) -> str:
    """The default terms line: "Payable within 14 days, by 17 Nov 2026."."""
    return f"Payable within {days} days, by {due_date:%d %b %Y}."


def render_invoice_pdf(doc: InvoiceDocument) -> bytes:
    """The invoice as PDF bytes; the same document always gives the same bytes."""
    from fpdf import FPDF  # imported on first use: it adds ~0.3 s to every start

    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime.combine(doc.issue_date, datetime.min.time(), tzinfo=UTC))
    pdf.set_title(f"Invoice {doc.number}")
    pdf.set_author(doc.seller.name)
    pdf.set_creator("soloops")
    pdf.set_producer("soloops")
    font = unicode_font()
    if font is not None:
        pdf.add_font("Body", "", str(font))
        family = "Body"
    else:
        pdf.core_fonts_encoding = "cp1252"
        family = "Helvetica"
    text = _text_for(font is not None)
    pdf.add_page()
    money = _money(doc)

    pdf.set_font(family, size=18)
    pdf.cell(0, 10, text(f"Invoice {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    pdf.cell(0, 6, f"Issue date: {doc.issue_date.isoformat()}", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, f"Due date: {doc.due_date.isoformat()}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    seller = [doc.seller.name, *doc.seller.address.splitlines()]
    if doc.seller.tax_id:
        seller.append(f"Tax ID: {doc.seller.tax_id}")
    buyer = [doc.buyer] + ([doc.buyer_email] if doc.buyer_email else [])
    top = pdf.get_y()
    pdf.multi_cell(90, 5, text("From:\n" + "\n".join(seller)), new_x="LMARGIN", new_y="NEXT")
    bottom = pdf.get_y()
    pdf.set_xy(110, top)
    pdf.multi_cell(90, 5, text("Bill to:\n" + "\n".join(buyer)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_xy(pdf.l_margin, max(bottom, pdf.get_y()) + 6)

    widths = (95, 20, 35, 35)
    pdf.set_font(family, size=10)
    for width, head in zip(widths, ("Description", "Qty", "Unit price", "Amount"), strict=True):
        pdf.cell(width, 7, head, border="B", align="L" if head == "Description" else "R")
    pdf.ln()
    for line in doc.lines:
        cells = (text(line.description), _qty(line.quantity), money(line.unit_price))
        pdf.cell(widths[0], 7, cells[0])
        pdf.cell(widths[1], 7, cells[1], align="R")
        pdf.cell(widths[2], 7, cells[2], align="R")
        pdf.cell(widths[3], 7, money(line.amount), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    rate = "" if doc.vat_rate is None else f" {_qty(doc.vat_rate)}%"
    for label, value in (("Subtotal", doc.subtotal), (f"VAT{rate}", doc.vat)):
        pdf.cell(150, 6, label, align="R")
        pdf.cell(35, 6, money(value), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=12)
    pdf.cell(150, 8, "Total", align="R")
    pdf.cell(35, 8, money(doc.total), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    pdf.ln(6)
    pdf.multi_cell(0, 5, text(doc.payment_terms), new_x="LMARGIN", new_y="NEXT")
    if doc.seller.payment_details:
        pdf.multi_cell(
            0,
            5,
            text("Payment details: " + doc.seller.payment_details),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    return bytes(pdf.output())


def _money(doc: InvoiceDocument) -> Callable[[Decimal], str]:
    def show(amount: Decimal) -> str:
        return _text_for(unicode_font() is not None)(format_money(amount, doc.currency, doc.locale))

    return show


def _qty(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _text_for(unicode: bool) -> Callable[[str], str]:
    def keep(value: str) -> str:
        return value

    def western(value: str) -> str:
        # Core fonts hold cp1252 only; say "?" rather than fail on other scripts.
        return value.encode("cp1252", errors="replace").decode("cp1252")

    return keep if unicode else western
