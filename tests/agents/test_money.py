from __future__ import annotations

from decimal import Decimal

import pytest

from agents.money import (
    MAX_AMOUNT,
    MoneyError,
    check_amount,
    currency_code,
    format_money,
    line_amount,
    parse_amount,
    parse_decimal,
    parse_vat_rate,
    precision,
    totals,
    vat_on,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1200", "1200"),
        ("1,200", "1200"),
        ("1,200.50", "1200.50"),
        ("1200.5", "1200.5"),
        ("12,345,678.9", "12345678.9"),
        ("-5", "-5"),
    ],
)
def test_amounts_use_a_decimal_point_and_optional_thousands_commas(text: str, value: str) -> None:
    assert parse_decimal(text) == Decimal(value)


@pytest.mark.parametrize("text", ["1200,50", "1.200,50", "12,5"])
def test_a_decimal_comma_is_refused_with_the_point_form(text: str) -> None:
    with pytest.raises(MoneyError, match=r"decimal point.*\d+\.\d{1,2}, not"):
        parse_decimal(text)


@pytest.mark.parametrize("text", ["abc", "1,20,0", "12e3", "1..2", ""])
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="write digits"):
        parse_decimal(text)


def test_currency_codes_are_checked_against_iso_4217() -> None:
    assert currency_code("eur") == "EUR"
    assert currency_code(" JPY ") == "JPY"
    for bad in ("EUX", "XXX", "XAU", "EURO"):
        with pytest.raises(MoneyError, match=r"Unknown currency.*e.g. 1200 EUR"):
            currency_code(bad)


def test_precision_follows_the_currency() -> None:
    assert (precision("EUR"), precision("JPY"), precision("BHD")) == (2, 0, 3)
    assert parse_amount("1200", "JPY") == Decimal("1200")
    assert parse_amount("1200.5", "EUR") == Decimal("1200.50")
    assert parse_amount("1.200", "BHD") == Decimal("1.200")


def test_more_decimals_than_the_currency_has_is_refused_with_both_readings() -> None:
    with pytest.raises(MoneyError, match=r"at most 2 decimals.*1\.20, or 1200 if you meant"):
        parse_amount("1.200", "EUR")
    with pytest.raises(MoneyError, match="JPY amounts have no decimals"):
        parse_amount("10.5", "JPY")


def test_negative_zero_and_absurd_amounts_are_refused_with_what_to_do() -> None:
    with pytest.raises(MoneyError, match=r"negative.*void it with /invoice"):
        parse_amount("-500", "EUR")
    with pytest.raises(MoneyError, match="zero: write the amount"):
        parse_amount("0", "EUR")
    with pytest.raises(MoneyError, match=r"more than 1,000,000,000 EUR; check for a typo"):
        check_amount(MAX_AMOUNT + 1, "EUR")
    assert check_amount(MAX_AMOUNT, "EUR") == MAX_AMOUNT


def test_vat_is_rounded_half_up_once_on_the_subtotal() -> None:
    # Per line 19% of 0.05 would round to 0.01 each (0.03 for three lines); on the
    # subtotal 0.15 * 19% = 0.0285 -> 0.03 as well, but 10.05 * 19% = 1.9095 -> 1.91.
    result = totals([Decimal("10.00"), Decimal("0.05")], Decimal(19), "EUR")
    assert (result.subtotal, result.vat, result.total) == (
        Decimal("10.05"),
        Decimal("1.91"),
        Decimal("11.96"),
    )
    assert vat_on(Decimal("0.50"), Decimal(5), "EUR") == Decimal("0.03")  # 0.025 half up
    assert vat_on(Decimal("100"), None, "EUR") == Decimal("0.00")
    assert vat_on(Decimal("1005"), Decimal(10), "JPY") == Decimal("101")  # 100.5 half up
    assert line_amount(Decimal(3), Decimal("33.335"), "EUR") == Decimal("100.01")


def test_an_absurd_total_is_refused() -> None:
    with pytest.raises(MoneyError, match="invoice total"):
        totals([MAX_AMOUNT, Decimal(1)], None, "EUR")


def test_vat_rates() -> None:
    assert parse_vat_rate("19%") == Decimal(19)
    assert parse_vat_rate("7.5 %") == Decimal("7.5")
    assert parse_vat_rate("0") == Decimal(0)
    for bad in ("150%", "-1", "lots"):
        with pytest.raises(MoneyError, match=r"vat 19%"):
            parse_vat_rate(bad)


def test_formatting_follows_currency_and_locale() -> None:
    assert format_money(Decimal("1200.5"), "EUR") == "€1,200.50"
    assert format_money(Decimal("1200"), "JPY") == "¥1,200"
    assert format_money(Decimal("1200.5"), "EUR", "de_DE") == "1.200,50\xa0€"
    assert format_money(Decimal("5"), "EUR", "zz") == "€5.00"
