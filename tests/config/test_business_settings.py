from __future__ import annotations

from datetime import timedelta

import pytest

from config.settings import ConfigError, load_settings, parse_duration


def test_defaults() -> None:
    settings = load_settings()
    assert settings.invoices.payment_terms_days == 14
    assert settings.invoices.reminder_days == [3, 10, 20]
    assert settings.followups.delay == timedelta(days=2)


def test_only_the_seller_name_is_required_and_the_message_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = load_settings().invoices.problem()
    assert problem is not None and "SOLOOPS_INVOICES__SELLER_NAME" in problem
    monkeypatch.setenv("SOLOOPS_INVOICES__SELLER_NAME", "Ada Consulting")
    monkeypatch.setenv("SOLOOPS_INVOICES__PAYMENT_TERMS_DAYS", "30")
    settings = load_settings()
    assert settings.invoices.problem() is None
    assert settings.invoices.payment_terms_days == 30


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLOOPS_INVOICES__REMINDER_DAYS", "[10, 3]")
    with pytest.raises(ConfigError, match="SOLOOPS_INVOICES__REMINDER_DAYS"):
        load_settings()
    monkeypatch.delenv("SOLOOPS_INVOICES__REMINDER_DAYS")
    monkeypatch.setenv("SOLOOPS_FOLLOWUPS__AFTER", "soon")
    with pytest.raises(ConfigError, match=r"2d, 36h.*SOLOOPS_FOLLOWUPS__AFTER"):
        load_settings()


def test_durations() -> None:
    assert parse_duration("36h") == timedelta(hours=36)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    assert parse_duration("20s") == timedelta(seconds=20)
    monkey = load_settings(followups={"after": "20s"})
    assert monkey.followups.delay == timedelta(seconds=20)


@pytest.mark.parametrize("after", ["0s", "2 days", "1h30", "-2h"])
def test_followups_take_a_positive_compact_duration_only(
    monkeypatch: pytest.MonkeyPatch, after: str
) -> None:
    monkeypatch.setenv("SOLOOPS_FOLLOWUPS__AFTER", after)
    with pytest.raises(ConfigError, match="SOLOOPS_FOLLOWUPS__AFTER"):
        load_settings()
    monkeypatch.setenv("SOLOOPS_FOLLOWUPS__AFTER", "1h 30m")
    assert load_settings().followups.delay == timedelta(hours=1, minutes=30)
