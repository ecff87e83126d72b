"""Runbooks: every file loads with a title and a 'What to do' part; errors map to kinds."""

from __future__ import annotations

import pytest

from agents.registry import build_registry
from agents.runbook import GENERIC
from config.runbooks import RunbookNotFound, kinds, runbook, runbook_for_error

NAMED_BY_THE_ISSUE = {
    "webhook-rejected",
    "smtp-auth-failed",
    "telegram-unreachable",
    "slack-token-revoked",
    "model-missing",
    "database-locked",
    "database-full",
    "budget-exceeded",
    "breaker-open",
}


def test_the_issue_s_kinds_all_have_a_runbook() -> None:
    assert set(kinds()) >= NAMED_BY_THE_ISSUE


@pytest.mark.parametrize("kind", kinds())
def test_every_runbook_has_a_title_and_steps(kind: str) -> None:
    book = runbook(kind)
    assert book.kind == kind
    assert book.title and book.title != kind and not book.title.startswith("#")
    assert book.text.startswith(f"# {book.title}\n")
    assert "## What to do" in book.text
    steps = book.what_to_do
    assert steps.startswith("1. ")
    assert len(book.text) < 1500  # short enough to read in a chat bubble


def test_an_unknown_kind_names_the_kinds_there_are() -> None:
    with pytest.raises(RunbookNotFound, match="breaker-open"):
        runbook("no-such-thing")


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"error": "sqlite3.OperationalError: database is locked"}, "database-locked"),
        ({"error": "database or disk is full"}, "database-full"),
        ({"error": "[Errno 28] No space left on device"}, "database-full"),
        ({"error": "(535, b'5.7.8 Authentication failed')"}, "smtp-auth-failed"),
        ({"error_type": "SMTPAuthenticationError", "error": "bad credentials"}, "smtp-auth-failed"),
        ({"error": "The request to the Slack API failed: token_revoked"}, "slack-token-revoked"),
        ({"error": "invalid_auth"}, "slack-token-revoked"),
        ({"error_type": "EmbedderUnavailable", "error": "x"}, "model-missing"),
        ({"error": "the model 'all-MiniLM-L6-v2' is not loaded"}, "model-missing"),
        ({"error": "ops reached its daily budget (200 actions)"}, "budget-exceeded"),
        ({"error": "breaker open for webhook"}, "breaker-open"),
        ({"error": "hook 'crm' answered 403: forbidden (after 1 attempts)"}, "webhook-rejected"),
        ({"error": "hook 'crm' answered 503 (after 4 attempts)"}, "webhook-unreachable"),
        ({"error": "could not reach hook 'crm' (ConnectError: refused)"}, "webhook-unreachable"),
        ({"error": "Timed out talking to api.telegram.org"}, "telegram-unreachable"),
        (
            {"error_type": "NetworkError", "error": "telegram: connection reset"},
            "telegram-unreachable",
        ),
        ({"error": "refused", "connector": "webhook", "failure": "permanent"}, "webhook-rejected"),
        ({"error": "down", "connector": "webhook", "failure": "exhausted"}, "webhook-unreachable"),
        ({"error": "nope", "connector": "email", "failure": "permanent"}, "service-refused"),
        ({"error": "slow", "connector": "email", "failure": "exhausted"}, "service-unavailable"),
        ({"error": "?", "connector": "webhook", "failure": "uncertain"}, "action-uncertain"),
    ],
)
def test_errors_map_to_their_runbook(kwargs: dict[str, str], kind: str) -> None:
    assert runbook_for_error(**kwargs) == kind
    assert kind in kinds()


def test_an_error_with_no_known_cause_maps_to_nothing() -> None:
    assert runbook_for_error("something odd happened") is None
    assert runbook_for_error() is None


def test_every_hint_of_the_executor_has_a_runbook() -> None:
    hints = build_registry().hints  # every default feature's (connector, failure) hints
    assert hints
    for connector, failure in hints:
        assert runbook_for_error("x", connector=connector, failure=failure) in kinds()
    for failure in GENERIC:
        assert runbook_for_error("x", connector="other", failure=failure) in kinds()
