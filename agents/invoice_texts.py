"""What the invoices feature writes: the printed document, the emails, the card
summaries and the chat lines. Pure (no I/O): stored invoices and settings in, text,
documents and email params out.

The three emails the feature sends (each an ``email.send`` action through the gate):
the invoice with its PDF, the staged payment reminder (friendly, firm, final, with the
PDF again) and the cancellation of a sent invoice (the compensation of sending it).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from agents.invoice_grammar import InvoiceDraft
from agents.invoice_pdf import (
    DocumentLine,
    InvoiceDocument,
    Seller,
    payment_terms_text,
)
from agents.money import format_money
from agents.payment_reminders import DueReminder
from config.settings import InvoiceSettings
from memory.invoices import Invoice, InvoiceState, NewInvoice, StoredLine

PDF_MIME = "application/pdf"
_NUMBER_IN = re.compile(r"\bINV-\d{4}-\d{4,6}\b")
_STAGE_IN = re.compile(r"\breminder (\d+)/\d+\b")


def seller_of(settings: InvoiceSettings) -> Seller:
    """The seller printed on invoices (``SOLOOPS_INVOICES__*``)."""
    return Seller(
        name=settings.seller_name.strip(),
        address=settings.seller_address,
        tax_id=settings.tax_id,
        payment_details=settings.payment_details,
    )


def new_invoice(
    draft: InvoiceDraft, recipient: str, issue_date: date, terms_days: int
) -> NewInvoice:
    """The invoice to number and store for ``draft``, issued on ``issue_date``."""
    sums = draft.totals()
    days = draft.due_days if draft.due_days is not None else terms_days
    return NewInvoice(
        client=draft.client,
        recipient=recipient,
        currency=draft.currency,
        lines=tuple(
            StoredLine(line.description, line.quantity, line.unit_price, line.amount)
            for line in draft.lines
        ),
        subtotal=sums.subtotal,
        vat=sums.vat,
        total=sums.total,
        vat_rate=draft.vat_rate,
        issue_date=issue_date,
        due_date=date.fromordinal(issue_date.toordinal() + days),
    )


def document_of(invoice: Invoice, settings: InvoiceSettings) -> InvoiceDocument:
    """Everything printed on ``invoice``'s PDF."""
    days = (invoice.due_date - invoice.issue_date).days
    return InvoiceDocument(
        number=invoice.number,
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        seller=seller_of(settings),
        buyer=invoice.client,
        buyer_email=invoice.recipient,
        currency=invoice.currency,
        lines=[
            DocumentLine(line.description, line.quantity, line.unit_price, line.amount)
            for line in invoice.lines
        ],
        subtotal=invoice.subtotal,
        vat_rate=invoice.vat_rate,
        vat=invoice.vat,
        total=invoice.total,
        payment_terms=payment_terms_text(invoice.due_date, days),
        locale=settings.locale,
    )


def pdf_filename(invoice: Invoice) -> str:
    """``INV-2026-0001.pdf``."""
    return f"{invoice.number}.pdf"


def money(invoice: Invoice, settings: InvoiceSettings) -> str:
    """The invoice's total as the configured locale writes it."""
    return format_money(invoice.total, invoice.currency, settings.locale)


def _attachment(invoice: Invoice, pdf: bytes) -> dict[str, str]:
    return {
        "filename": pdf_filename(invoice),
        "content_type": PDF_MIME,
        "content_b64": base64.b64encode(pdf).decode("ascii"),
    }


def _closing(seller: Seller) -> str:
    details = f"\n\nPayment details: {seller.payment_details}" if seller.payment_details else ""
    return f"{details}\n\nKind regards,\n{seller.name}\n"


@dataclass(frozen=True, slots=True)
class Email:
    """One email to propose: its ``email.send`` params and the card's summary."""

    params: dict[str, Any]
    summary: str


def invoice_email(invoice: Invoice, pdf: bytes, sha256: str, settings: InvoiceSettings) -> Email:
    """The invoice, PDF attached; the card names the PDF's hash it binds."""
    seller = seller_of(settings)
    total = money(invoice, settings)
    items = "; ".join(line.description for line in invoice.lines)
    text = (
        f"Hello,\n\nplease find attached invoice {invoice.number} for {total} ({items}),"
        f" payable by {invoice.due_date.isoformat()}." + _closing(seller)
    )
    lines = "\n".join(
        f"  {line.description}: {format_money(line.amount, invoice.currency, settings.locale)}"
        for line in invoice.lines
    )
    vat = "" if invoice.vat_rate is None else f", VAT {invoice.vat_rate.normalize():f}%"
    summary = (
        f"Email invoice {invoice.number} to {invoice.recipient}: {invoice.client},"
        f" {total}{vat}, due {invoice.due_date.isoformat()}\n{lines}\n"
        f"PDF {pdf_filename(invoice)} sha256 {sha256[:16]}…"
    )
    params = {
        "to": [invoice.recipient],
        "subject": f"Invoice {invoice.number} from {seller.name}",
        "text": text,
        "attachments": [_attachment(invoice, pdf)],
    }
    return Email(params, summary)


_TONE_SUBJECT = {
    "friendly": "Friendly reminder: invoice {number} is due",
    "firm": "Second reminder: invoice {number} is {days} days overdue",
    "final": "Final reminder: invoice {number} is {days} days overdue",
}
_TONE_TEXT = {
    "friendly": (
        "Hello,\n\nthis is a friendly reminder that invoice {number} for {total}, due on"
        " {due}, is still open. If you have already paid it, please disregard this email."
    ),
    "firm": (
        "Hello,\n\ninvoice {number} for {total} was due on {due} and is now {days} days"
        " overdue. Please pay it within the next few days."
    ),
    "final": (
        "Hello,\n\ninvoice {number} for {total} was due on {due} and is now {days} days"
        " overdue. This is our final reminder: please pay it within 7 days."
    ),
}


def reminder_email(
    invoice: Invoice, due: DueReminder, stages: int, pdf: bytes, settings: InvoiceSettings
) -> Email:
    """The staged payment reminder ``due`` for ``invoice``, its PDF attached again."""
    seller = seller_of(settings)
    fields = {
        "number": invoice.number,
        "total": money(invoice, settings),
        "due": invoice.due_date.isoformat(),
        "days": due.days_overdue,
    }
    caught = " (caught up after missed days)" if due.caught_up else ""
    summary = (
        f"Email payment reminder {due.stage}/{stages} ({due.tone}) for {invoice.number} to"
        f" {invoice.recipient}: {invoice.client}, {fields['total']},"
        f" {due.days_overdue} days overdue{caught}"
    )
    params = {
        "to": [invoice.recipient],
        "subject": _TONE_SUBJECT[due.tone].format(**fields),
        "text": _TONE_TEXT[due.tone].format(**fields) + _closing(seller),
        "attachments": [_attachment(invoice, pdf)],
    }
    return Email(params, summary)


def cancellation_email(invoice: Invoice, settings: InvoiceSettings) -> Email:
    """The cancellation of a sent invoice (the number stays used)."""
    seller = seller_of(settings)
    total = money(invoice, settings)
    text = (
        f"Hello,\n\ninvoice {invoice.number} of {invoice.issue_date.isoformat()} for {total}"
        " is cancelled: please disregard it. If a corrected invoice is due, it follows"
        " under a new number." + _closing(seller)
    )
    params = {
        "to": [invoice.recipient],
        "subject": f"Cancellation of invoice {invoice.number}",
        "text": text,
    }
    summary = (
        f"Email the cancellation of {invoice.number} ({invoice.client}, {total})"
        f" to {invoice.recipient}"
    )
    return Email(params, summary)


def number_in(text: str) -> str | None:
    """The invoice number a card summary names."""
    found = _NUMBER_IN.search(text)
    return found.group(0) if found else None


def stage_in(text: str) -> int | None:
    """The reminder stage a reminder card's summary names."""
    found = _STAGE_IN.search(text)
    return int(found.group(1)) if found else None


def status_of(invoice: Invoice, today: date) -> str:
    """``sent, due 2026-12-07``, ``3 days overdue``, ``paid 2026-12-01``..."""
    if invoice.state is InvoiceState.PAID:
        return f"paid {invoice.paid_at.isoformat() if invoice.paid_at else ''}".strip()
    if invoice.state is InvoiceState.SENT:
        late = (today - invoice.due_date).days
        if late > 0:
            return f"{late} day{'s' if late != 1 else ''} overdue (due {invoice.due_date})"
        return f"sent, due {invoice.due_date.isoformat()}"
    if invoice.state is InvoiceState.PROPOSED:
        return "waiting for your approval"
    return invoice.state.value


def invoice_line(invoice: Invoice, today: date, settings: InvoiceSettings) -> str:
    """One invoice in a list."""
    total = money(invoice, settings)
    return f"{invoice.number} · {invoice.client} · {total} · {status_of(invoice, today)}"


def invoice_detail(invoice: Invoice, today: date, settings: InvoiceSettings) -> str:
    """``/invoice <no>``: everything about one invoice."""
    cur, loc = invoice.currency, settings.locale
    lines = [
        f"{invoice.number} for {invoice.client} ({invoice.recipient or 'no email'})",
        f"Issued {invoice.issue_date.isoformat()}, due {invoice.due_date.isoformat()}:"
        f" {status_of(invoice, today)}",
    ]
    for line in invoice.lines:
        qty = "" if line.quantity == 1 else f"{line.quantity.normalize():f} x "
        unit = format_money(line.unit_price, cur, loc) if qty else ""
        lines.append(
            f"  {line.description}: {qty}{unit}{' = ' if qty else ''}"
            f"{format_money(line.amount, cur, loc)}"
        )
    rate = "" if invoice.vat_rate is None else f" {invoice.vat_rate.normalize():f}%"
    lines.append(
        f"Subtotal {format_money(invoice.subtotal, cur, loc)}, VAT{rate}"
        f" {format_money(invoice.vat, cur, loc)}, total {money(invoice, settings)}"
    )
    if invoice.state is InvoiceState.SENT and invoice.reminders_sent:
        lines.append(f"Payment reminders sent: {invoice.reminders_sent}")
    return "\n".join(lines)


def due_lines(
    invoices: Iterable[Invoice], today: date, horizon_end: date, settings: InvoiceSettings
) -> list[str]:
    """The digest's and ``/today``'s invoice lines: overdue ones, then the ones falling due."""
    overdue: list[str] = []
    coming: list[str] = []
    for invoice in invoices:
        if invoice.state is not InvoiceState.SENT:
            continue
        total = money(invoice, settings)
        late = (today - invoice.due_date).days
        if late > 0:
            overdue.append(
                f"Invoice {invoice.number} ({invoice.client}, {total}) is {late} day"
                f"{'s' if late != 1 else ''} overdue"
            )
        elif invoice.due_date <= horizon_end:
            coming.append(
                f"Invoice {invoice.number} ({invoice.client}, {total}) is due"
                f" {invoice.due_date.isoformat()}"
            )
    return overdue + coming


def listing(title: str, invoices: Sequence[Invoice], today: date, settings: InvoiceSettings) -> str:
    """The ``/invoices`` reply."""
    if not invoices:
        return (
            f"No {title} invoices. Create one with"
            " /invoice Acme 1200 EUR October consulting to billing@acme.com"
        )
    total = f"{len(invoices)} {title} invoice{'s' if len(invoices) != 1 else ''}:"
    return "\n".join([total, *(invoice_line(i, today, settings) for i in invoices)])
