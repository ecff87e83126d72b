"""Money: ``Decimal`` amounts in an ISO-4217 currency, never floats.

Rules (also in the README, "Business workflows"):

- **Currencies** are ISO-4217 codes known to babel (``EUR``, ``USD``, ``JPY``...).
  Codes of units that are not money (``XXX``, ``XTS``, ``XAU``...) are refused.
- **Writing amounts**: the decimal separator is a point; a comma may only group
  thousands in groups of three (``1200``, ``1,200``, ``1,200.50``, ``1200.5``). A decimal
  comma (``1200,50``, ``1.200,50``) is refused with a hint instead of being guessed,
  because ``1.200`` / ``1,200`` mean a thousand times different things in different
  countries. More decimals than the currency has (``1.200`` EUR, ``10.5`` JPY) are
  refused too, which also catches ``1.200`` written as German "twelve hundred".
- **Bounds**: amounts are positive and at most :data:`MAX_AMOUNT`.
- **Rounding**: a line's net amount (quantity x unit price) is rounded half-up to the
  currency's minor unit; VAT is computed once on the invoice's net subtotal (one rate
  per invoice) and rounded half-up, which is what the EU VAT Directive art. 226 asks an
  invoice to show (the VAT amount per rate) and avoids per-line rounding drift.

Every refusal is a :class:`MoneyError` whose message says what to type instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache

# babel is imported where a currency is first looked at: start-up never needs it.

MAX_AMOUNT = Decimal(10) ** 9
"""The largest amount accepted for one invoice or line (anything above is a typo)."""

MAX_VAT_RATE = Decimal(100)

# Codes babel lists that are not money one invoices in (ISO-4217 "X" funds, metals,
# testing and "no currency"); the real X currencies (XAF, XOF, XPF, XCD) stay.
_NOT_MONEY = frozenset("XXX XTS XAU XAG XPD XPT XBA XBB XBC XBD XDR XSU XUA XFO XFU XRE".split())

_PLAIN = re.compile(r"\d+(?:\.\d+)?")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[\d.]*\d,\d{1,2}")


class MoneyError(ValueError):
    """An amount, currency or rate was refused; the message tells the operator the fix."""


@dataclass(frozen=True, slots=True)
class Totals:
    """An invoice's net subtotal, VAT and gross total, in one currency."""

    subtotal: Decimal
    vat: Decimal
    total: Decimal


@cache
def _known() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(code for code in list_currencies() if code not in _NOT_MONEY)


def is_currency(code: str) -> bool:
    """Whether ``code`` (exactly as written, upper case) is an accepted currency."""
    return code in _known()


def currency_code(text: str) -> str:
    """Return the ISO-4217 code ``text`` names (case-insensitive), or raise MoneyError."""
    code = text.strip().upper()
    if not is_currency(code):
        raise MoneyError(
            f"Unknown currency {text.strip()!r}: write a three-letter ISO code after the "
            "amount, e.g. 1200 EUR, 900 USD or 750 GBP."
        )
    return code


def precision(currency: str) -> int:
    """How many decimals the currency has (EUR 2, JPY 0, BHD 3)."""
    from babel.numbers import get_currency_precision

    return int(get_currency_precision(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit."""
    return amount.quantize(Decimal(1).scaleb(-precision(currency)), rounding=ROUND_HALF_UP)


def parse_decimal(text: str) -> Decimal:
    """Read a number written with a decimal point (and optional thousands commas).

    Signs are kept (``-5``) so the caller can refuse them with a precise message.
    """
    raw = text.strip().replace("\u2212", "-")
    sign = ""
    if raw and raw[0] in "+-":
        sign, raw = raw[0], raw[1:].strip()
    if _DECIMAL_COMMA.fullmatch(raw):
        fixed = raw.replace(".", "").replace(",", ".")
        raise MoneyError(
            f"Write amounts with a decimal point and no other separators: {fixed}, not {raw}."
        )
    if _GROUPED.fullmatch(raw):
        raw = raw.replace(",", "")
    elif not _PLAIN.fullmatch(raw):
        raise MoneyError(f"{text.strip()!r} is not an amount: write digits, e.g. 1200 or 1200.50.")
    try:
        return Decimal(sign + raw)
    except InvalidOperation:  # pragma: no cover - the patterns above only pass numbers
        raise MoneyError(f"{text.strip()!r} is not an amount: write digits, e.g. 1200.") from None


def check_amount(amount: Decimal, currency: str, *, what: str = "The amount") -> Decimal:
    """Refuse non-positive, absurd or over-precise amounts; return the amount quantized."""
    shown = f"{amount} {currency}"
    if amount < 0:
        raise MoneyError(
            f"{what} {shown} is negative. Amounts are positive; to take back an invoice, "
            "void it with /invoice <number> void and issue a new one."
        )
    if amount == 0:
        raise MoneyError(f"{what} is zero: write the amount to charge, e.g. 1200 {currency}.")
    if amount > MAX_AMOUNT:
        raise MoneyError(
            f"{what} {shown} is more than {MAX_AMOUNT:,} {currency}; check for a typo "
            "(amounts are written like 1200 or 1,200.50)."
        )
    places = precision(currency)
    # The written exponent, not the normalized one: "1.200" EUR has three decimals and is
    # most likely a German "twelve hundred", so it is refused rather than read as 1.20.
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        hint = "no decimals" if places == 0 else f"at most {places} decimals"
        suggestion = f"write {quantize(amount, currency)}"
        if exponent == -3:
            thousands = str(amount).replace(".", "").lstrip("0") or "0"
            suggestion += f", or {thousands} if you meant thousands (no separator needed)"
        raise MoneyError(f"{currency} amounts have {hint}, so {amount} is unclear: {suggestion}.")
    return quantize(amount, currency)


def parse_amount(text: str, currency: str) -> Decimal:
    """Parse and check an amount in ``currency`` (see the module rules)."""
    return check_amount(parse_decimal(text), currency)


def parse_vat_rate(text: str) -> Decimal:
    """Read a VAT rate in percent ("19", "19%", "7.5 %"); 0 <= rate < 100."""
    raw = text.strip().removesuffix("%").strip()
    try:
        rate = parse_decimal(raw)
    except MoneyError:
        raise MoneyError(f"VAT {text.strip()!r} is not a rate: write e.g. vat 19%.") from None
    if rate < 0 or rate >= MAX_VAT_RATE:
        raise MoneyError(f"VAT {text.strip()} is out of range: write a percentage, e.g. vat 19%.")
    return rate


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    """One line's net amount, rounded half-up to the minor unit."""
    return quantize(quantity * unit_price, currency)


def vat_on(subtotal: Decimal, rate: Decimal | None, currency: str) -> Decimal:
    """VAT on a net subtotal at ``rate`` percent, rounded half-up (0 without a rate)."""
    if rate is None:
        return quantize(Decimal(0), currency)
    return quantize(subtotal * rate / Decimal(100), currency)


def totals(amounts: Iterable[Decimal], rate: Decimal | None, currency: str) -> Totals:
    """Subtotal of line amounts, VAT on it, and the gross total; refuses absurd totals."""
    subtotal = quantize(sum(amounts, Decimal(0)), currency)
    vat = vat_on(subtotal, rate, currency)
    total = subtotal + vat
    if total > MAX_AMOUNT:
        raise MoneyError(
            f"The invoice total {total} {currency} is more than {MAX_AMOUNT:,} {currency}; "
            "check the amounts for a typo."
        )
    return Totals(subtotal=subtotal, vat=vat, total=total)


def format_money(amount: Decimal, currency: str, locale: str = "en") -> str:
    """The amount as the locale writes it ("€1,200.50" in en, "1.200,50 €" in de_DE)."""
    from babel.core import UnknownLocaleError
    from babel.numbers import format_currency

    try:
        return str(format_currency(quantize(amount, currency), currency, locale=locale))
    except (UnknownLocaleError, ValueError):
        # A bad locale setting must not stop an invoice; fall back to the documented default.
        return str(format_currency(quantize(amount, currency), currency, locale="en"))
