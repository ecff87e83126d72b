from __future__ import annotations

import logging

import pytest

from memory.redact import REDACTED, RedactingFilter, Redactor


def test_nested_data_and_longest_secret_first() -> None:
    redactor = Redactor(["abc", "abcdef", ""])
    assert redactor.text("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"
    data = {"Authorization": "Bearer z", "items": [{"password": 1}, "abc"], "ok": 3}
    assert redactor.data(data) == {
        "Authorization": REDACTED,
        "items": [{"password": REDACTED}, REDACTED],
        "ok": 3,
    }


def test_log_records_and_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact")
    caplog.handler.addFilter(RedactingFilter(Redactor(["tok-12345"])))
    try:
        raise RuntimeError("auth failed for tok-12345")
    except RuntimeError:
        logger.exception("calling with %s", "tok-12345")
    assert "tok-12345" not in caplog.text
    assert f"calling with {REDACTED}" in caplog.text
    assert f"auth failed for {REDACTED}" in caplog.text
