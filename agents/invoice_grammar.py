"""The ``/invoice`` and ``/invoices`` grammar: chat text in, a typed command or a refusal out.

Pure (no I/O). Forms::

    /invoice Acme 1200 EUR October consulting [to billing@acme.com] [due in 14 days] [vat 19%]
    /invoice Acme            (then one line per item on the following lines)
    /invoice Acme; 2 days workshop 1600 EUR; travel 240 EUR
    /invoice Acme 3 x 400 EUR design sprints          (quantity x unit price)
    /invoice Acme 500 EUR retainer every month on the 1st   (recurring)
    /invoice INV-2026-0001 paid [2026-11-03 | today | yesterday]
    /invoice INV-2026-0001 void
    /invoices [open|overdue|paid|void|all]

The client is what comes before the first amount of the first line. Options (``to``,
``due in``, ``vat``, ``every ...``) may stand on any line. Every line needs an amount;
the currency may be written once (the others take it), but two different currencies in
one invoice are refused. Amounts follow :mod:`agents.money`'s rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from agents.grammar import Refusal, after_command, choose, command, read_email
from agents.money import (
    MoneyError,
    Totals,
    check_amount,
    currency_code,
    line_amount,
    parse_decimal,
    parse_vat_rate,
    totals,
)
from memory.invoices import format_number

USAGE = (
    "Write e.g. /invoice Acme 1200 EUR October consulting to billing@acme.com "
    "due in 14 days vat 19% (or /invoice Acme; 2 days workshop 1600 EUR; travel 240 EUR)."
)
MAX_QUANTITY = Decimal(100_000)
MAX_DUE_DAYS = 365
ListFilter = Literal["open", "overdue", "paid", "void", "all"]
LIST_FILTERS: tuple[ListFilter, ...] = ("open", "overdue", "paid", "void", "all")

# Lower-case codes people type; upper-case three-letter words are always read as codes
# (so "EUX" is refused as an unknown currency), lower-case ones only from this list
# because "for", "all" or "try" are words as well as ISO codes.
_TYPED_LOWER = frozenset("eur usd gbp chf jpy cad aud nzd sek nok dkk pln czk huf".split())
_SYMBOLS = {"€": "EUR", "£": "GBP"}

_COMMAND = command("invoice")
_NUMBER = re.compile(r"^(?:INV-)?(\d{4})-(\d{1,6})$", re.IGNORECASE)
_NUMERIC = re.compile(r"[-+\u2212]?\d[\d.,]*")
_QTY = re.compile(r"(\d+(?:\.\d+)?)\s*[x\u00d7]$", re.IGNORECASE)
_RECIPIENT = re.compile(r"\bto\s+(\S*@\S*)", re.IGNORECASE)
_DUE = re.compile(r"\bdue\s+in\s+(\S+)\s*(days?|d|weeks?|w)?\b", re.IGNORECASE)
_VAT = re.compile(r"\bvat\s*:?\s*(\S+(?:\s*%)?)", re.IGNORECASE)
_EVERY = re.compile(r"\bevery\b.*$", re.IGNORECASE)
_ISO_DATE = re.compile(r"^(?:on\s+)?(\d{4})-(\d{2})-(\d{2})$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DraftLine:
    """One invoice line: quantity x unit price of something, net of VAT."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    currency: str

    @property
    def amount(self) -> Decimal:
        """The line's net amount, rounded to the currency's minor unit."""
        return line_amount(self.quantity, self.unit_price, self.currency)


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """A new invoice as the operator asked for it (no number yet)."""

    client: str
    lines: tuple[DraftLine, ...]
    currency: str
    recipient: str | None
    due_days: int | None
    vat_rate: Decimal | None
    recurrence: str | None

    def totals(self) -> Totals:
        """Subtotal, VAT and total (see :func:`agents.money.totals`)."""
        return totals((line.amount for line in self.lines), self.vat_rate, self.currency)


@dataclass(frozen=True, slots=True)
class MarkPaid:
    """``/invoice <no> paid [date]``; ``paid_on`` is the date the money arrived."""

    number: str
    paid_on: date


@dataclass(frozen=True, slots=True)
class VoidInvoice:
    """``/invoice <no> void``: cancel it; the number stays used."""

    number: str


@dataclass(frozen=True, slots=True)
class ShowInvoice:
    """``/invoice <no>``: show one invoice."""

    number: str


@dataclass(frozen=True, slots=True)
class ListInvoices:
    """``/invoices [filter]``."""

    filter: ListFilter


InvoiceCommand = InvoiceDraft | MarkPaid | VoidInvoice | ShowInvoice


def parse_invoice(text: str, *, today: date) -> InvoiceCommand | Refusal:
    """Parse one ``/invoice`` message (the command word is optional)."""
    body = after_command(_COMMAND, text)
    if not body:
        return Refusal(USAGE)
    first = body.split(maxsplit=1)[0].rstrip(";,")
    number = _NUMBER.match(first)
    if number:
        return _subcommand(number, body.split()[1:], today)
    try:
        return _draft(body)
    except MoneyError as exc:
        return Refusal(str(exc))


def parse_invoices(text: str) -> ListInvoices | Refusal:
    """Parse ``/invoices [open|overdue|paid|void|all]`` (no word means open)."""
    words = after_command(_COMMAND, text).split()
    if not words:
        return ListInvoices("open")
    chosen = choose(words[0], LIST_FILTERS) if len(words) == 1 else None
    if chosen is not None:
        return ListInvoices(chosen)
    return Refusal("Write /invoices, or /invoices " + " | ".join(LIST_FILTERS) + ".")


def recipient_for(draft: InvoiceDraft, known_email: str | None) -> str | Refusal:
    """Where the invoice goes: the ``to`` address, else the client's known email."""
    if draft.recipient is not None:
        return draft.recipient
    if known_email:
        return known_email
    return Refusal(
        f"I have no email address for {draft.client}: add one to the line, e.g. "
        f"/invoice {draft.client} ... to billing@example.com."
    )


def _subcommand(number: re.Match[str], rest: list[str], today: date) -> InvoiceCommand | Refusal:
    canonical = format_number(int(number.group(1)), int(number.group(2)))
    if not rest:
        return ShowInvoice(canonical)
    verb, args = rest[0].lower(), rest[1:]
    if verb == "void" and not args:
        return VoidInvoice(canonical)
    if verb == "paid":
        paid_on = _paid_date(" ".join(args), today)
        if isinstance(paid_on, Refusal):
            return paid_on
        return MarkPaid(canonical, paid_on)
    return Refusal(
        f"Write /invoice {canonical} paid [date], /invoice {canonical} void, "
        f"or /invoice {canonical} to see it."
    )


def _paid_date(text: str, today: date) -> date | Refusal:
    word = text.strip().lower()
    if word in ("", "today"):
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    match = _ISO_DATE.match(word)
    if match:
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return Refusal(f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. {today}.")
        if day > today:
            return Refusal(f"{day} is in the future: write the day the payment arrived.")
        return day
    return Refusal(f"Write the payment date as YYYY-MM-DD (e.g. {today}), today or yesterday.")


@dataclass
class _Options:
    recipient: str | None = None
    due_days: int | None = None
    vat_rate: Decimal | None = None
    recurrence: str | None = None


def _draft(body: str) -> InvoiceDraft | Refusal:
    segments = [s.strip() for s in re.split(r"[;\n]", body)]
    options = _Options()
    cleaned: list[str] = []
    for segment in segments:
        rest = _take_options(segment, options)
        if isinstance(rest, Refusal):
            return rest
        cleaned.append(rest)
    header, items = cleaned[0], [s for s in cleaned[1:] if s]

    header_tokens = _tokens(header)
    at = _amount_index(header_tokens, header=True)
    if at is None:
        client, lines_raw = header, []
    else:
        start = min(_amount_span(header_tokens, at)[0])
        client = " ".join(header_tokens[:start])
        lines_raw = [header_tokens[start:]]
    client = re.sub(r"^for\s+", "", client.strip(" ,:-"), flags=re.IGNORECASE).strip()
    if not client:
        return Refusal("Name the client first. " + USAGE)
    lines_raw += [_tokens(item) for item in items]
    if not lines_raw:
        return Refusal(f"The invoice for {client} has no amount. " + USAGE)

    parsed: list[tuple[str, Decimal, Decimal, str | None]] = []
    for tokens in lines_raw:
        line = _line(tokens)
        if isinstance(line, Refusal):
            return line
        parsed.append(line)
    currencies = {cur for *_, cur in parsed if cur is not None}
    if len(currencies) > 1:
        return Refusal(
            "One invoice has one currency, but this one mixes "
            + " and ".join(sorted(currencies))
            + ": send one invoice per currency."
        )
    if not currencies:
        return Refusal("Say the currency after the amount, e.g. 1200 EUR. " + USAGE)
    currency = currencies.pop()
    lines = tuple(
        DraftLine(description, quantity, check_amount(price, currency), currency)
        for description, quantity, price, _ in parsed
    )
    draft = InvoiceDraft(
        client=client,
        lines=lines,
        currency=currency,
        recipient=options.recipient,
        due_days=options.due_days,
        vat_rate=options.vat_rate,
        recurrence=options.recurrence,
    )
    draft.totals()  # refuses an absurd total (MoneyError) before anything is stored
    return draft


def _take_options(segment: str, options: _Options) -> str | Refusal:
    match = _RECIPIENT.search(segment)
    if match:
        address = read_email(match.group(1))
        if isinstance(address, Refusal):
            return address
        if options.recipient not in (None, address):
            return Refusal("Give one recipient address per invoice.")
        options.recipient = address
        segment = segment[: match.start()] + segment[match.end() :]
    match = _DUE.search(segment)
    if match:
        count, unit = match.group(1), (match.group(2) or "").lower()
        if not count.isdigit() or not unit:
            return Refusal("Write the payment term as 'due in 14 days' or 'due in 2 weeks'.")
        days = int(count) * (7 if unit.startswith("w") else 1)
        if days > MAX_DUE_DAYS:
            return Refusal(f"'due in {days} days' is more than a year: write e.g. due in 30 days.")
        options.due_days = days
        segment = segment[: match.start()] + segment[match.end() :]
    match = _VAT.search(segment)
    if match:
        try:
            options.vat_rate = parse_vat_rate(match.group(1))
        except MoneyError as exc:
            return Refusal(str(exc))
        segment = segment[: match.start()] + segment[match.end() :]
    match = _EVERY.search(segment)
    if match:
        options.recurrence = " ".join(match.group(0).split())
        segment = segment[: match.start()]
    return " ".join(segment.split())


def _tokens(text: str) -> list[str]:
    for symbol, code in _SYMBOLS.items():
        text = re.sub(rf"{symbol}\s*(\d[\d.,]*)", rf"\1 {code}", text)
        text = re.sub(rf"(\d[\d.,]*)\s*{symbol}", rf"\1 {code}", text)
    # "1200EUR" and "EUR1200" are read as "1200 EUR".
    text = re.sub(r"(\d)([A-Za-z]{3})\b", r"\1 \2", text)
    text = re.sub(r"\b([A-Z]{3})(\d)", r"\1 \2", text)
    return text.split()


def _currency_word(token: str) -> bool:
    word = token.rstrip(",.:")
    if len(word) != 3 or not word.isalpha():
        return False
    return word.isupper() or word.lower() in _TYPED_LOWER


def _numeric(token: str) -> bool:
    return _NUMERIC.fullmatch(token.rstrip(",:")) is not None and not _QTY.fullmatch(token)


def _amount_index(tokens: list[str], *, header: bool) -> int | None:
    """Which token is the amount: the number next to a currency, else a bare number."""
    numbers = [i for i, token in enumerate(tokens) if _numeric(token)]
    for offset in (1, -1):  # "1200 EUR" before "EUR 1200" ("IBM 3 x 400 EUR": not 3)
        for i in numbers:
            if 0 <= i + offset < len(tokens) and _currency_word(tokens[i + offset]):
                return i
    if not numbers:
        return None
    # A bare number: the first on the header line (the client comes before it), the
    # last on an item line ("2 days workshop 1600").
    return numbers[0] if header else numbers[-1]


def _amount_span(tokens: list[str], at: int) -> tuple[set[int], str | None, Decimal]:
    """The tokens that make up the amount (quantity, number, currency), and their values."""
    used = {at}
    currency: str | None = None
    for near in (at + 1, at - 1):
        if 0 <= near < len(tokens) and _currency_word(tokens[near]):
            currency = currency_code(tokens[near].rstrip(",.:"))
            used.add(near)
            break
    first = min(used)
    quantity = _quantity_before(tokens, first)
    if quantity is None:
        return used, currency, Decimal(1)
    used |= {first - 1} if _QTY.fullmatch(tokens[first - 1]) else {first - 1, first - 2}
    return used, currency, quantity


def _quantity_before(tokens: list[str], at: int) -> Decimal | None:
    """The quantity in "3 x 400 EUR" / "3x 400 EUR" before the amount, if written."""
    if at >= 2 and tokens[at - 1].lower() in ("x", "\u00d7") and _numeric(tokens[at - 2]):
        return parse_decimal(tokens[at - 2])
    if at >= 1:
        match = _QTY.fullmatch(tokens[at - 1])
        if match:
            return Decimal(match.group(1))
    return None


def _line(tokens: list[str]) -> tuple[str, Decimal, Decimal, str | None] | Refusal:
    at = _amount_index(tokens, header=False)
    shown = " ".join(tokens)
    if at is None:
        return Refusal(f"The line {shown!r} has no amount: write e.g. 'travel 240 EUR'.")
    used, currency, quantity = _amount_span(tokens, at)
    if quantity <= 0 or quantity > MAX_QUANTITY:
        return Refusal(f"The quantity {quantity} in {shown!r} must be between 0 and 100000.")
    price = parse_decimal(tokens[at].rstrip(",:"))
    description = " ".join(t for i, t in enumerate(tokens) if i not in used).strip(" ,:-\u2013")
    if not description:
        return Refusal(f"Say what {shown!r} is for, e.g. '{shown} October consulting'.")
    return description, quantity, price, currency
