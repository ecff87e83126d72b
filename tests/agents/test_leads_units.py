"""The leads and follow-ups features' plain functions, and the /edit summary rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agents.actions import Action
from agents.approvals import edited_summary
from agents.followups import _followup_args, email_summary, parse_after, template_draft
from agents.leads import _LEAD_PREFIX, _leads_args, is_followup_for, lead_line, memory_of_lead
from agents.registry import build_registry
from memory.contacts import Lead, LeadStage

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _lead(**changes: object) -> Lead:
    fields: dict[str, object] = {
        "id": 3,
        "contact_id": 1,
        "name": "Jane Doe",
        "email": "jane@acme.com",
        "company": "Acme",
        "stage": LeadStage.NEW,
        "source": "chat",
        "value": None,
        "currency": None,
        "note": "wants a new site",
        "created_at": AT,
        "updated_at": AT,
    }
    fields.update(changes)
    return Lead(**fields)  # type: ignore[arg-type]  # the test fills every field


def test_lead_lines_and_memory() -> None:
    lead = _lead(value=Decimal("4000"), currency="EUR")
    assert lead_line(lead) == "#3 new: Jane Doe <jane@acme.com>, Acme [4000 EUR] — wants a new site"
    assert memory_of_lead(lead) == (
        "Lead #3: Jane Doe from Acme <jane@acme.com> — wants a new site. Source: chat."
    )


@pytest.mark.parametrize(
    ("said", "read"),
    [
        ("got a new lead: Ana ana@studio.pt", "new lead: Ana ana@studio.pt"),
        ("add a lead Lee lee@corp.com", "new lead: Lee lee@corp.com"),
        ("New lead - Tom tom@x.org", "new lead: Tom tom@x.org"),
        ("Jane jane@acme.com wants a site", "Jane jane@acme.com wants a site"),
    ],
)
def test_plain_lead_prefixes_read_as_new_lead(said: str, read: str) -> None:
    assert _LEAD_PREFIX.sub("new lead: ", said, count=1) == read


def test_command_arguments() -> None:
    assert _leads_args("") == {"stage": None}
    assert _leads_args("won") == {"stage": "won"}
    with pytest.raises(ValueError, match="takes one stage"):
        _leads_args("maybe")
    assert _followup_args(["#12", "in", "3", "days"]) == {"lead_id": "12", "after": "3 days"}
    assert parse_after(["36h"]) == "36h"
    for bad in (["12"], ["x", "in", "2d"], ["12", "someday"]):
        with pytest.raises(ValueError, match="/followup 12 in 3 days"):
            _followup_args(bad)


def test_template_and_card_summary() -> None:
    draft = template_draft(_lead(), "Ana Lima")
    assert draft.text.startswith(
        "Hi Jane,\n\nThanks again for getting in touch regarding your request (wants"
    )
    assert draft.text.endswith("Best regards,\nAna Lima")
    summary = email_summary("Jane Doe", "jane@acme.com", draft.subject, draft.text)
    assert summary.startswith("Send the follow-up email to Jane Doe <jane@acme.com>\nSubject: ")
    assert summary.endswith(draft.text)


def test_an_edit_replaces_the_text_in_the_summary_or_adds_it() -> None:
    assert edited_summary("To: a\n\nold body", "old body", "new") == "To: a\n\nnew"
    assert edited_summary("Post to hook", "old", "new") == "Post to hook\nEdited text:\nnew"


def test_editable_must_name_a_text_parameter() -> None:
    with pytest.raises(ValueError, match="not a text parameter"):
        Action("x", "email", "send", {"to": "a@b.co"}, "s", editable="text")
    action = Action("x", "email", "send", {"text": "hi"}, "s", editable="text")
    assert Action.from_json(action.as_json()) == action
    assert "editable" not in action.spec()  # what is executed is what the approval binds


def test_the_default_features_share_lead_memory_with_recall() -> None:
    registry = build_registry()
    assert set(registry.shared_memory) == {"leads", "followups"}
    assert registry.policies["followups.followup_email"].mode.value == "approve"
    assert registry.command("edit") is not None and registry.command("lead") is not None


def test_is_followup_for_matches_the_follow_up_email_to_that_address_only() -> None:
    spec = {"name": "followup_email", "params": {"to": "Jane@Acme.com", "text": "Hi"}}
    action = json.dumps(spec)
    assert is_followup_for("followups", action, "jane@acme.com")
    assert not is_followup_for("followups", action, "bob@globex.com")
    assert not is_followup_for("drafts", action, "jane@acme.com")
    other = json.dumps({**spec, "name": "publish"})
    assert not is_followup_for("followups", other, "jane@acme.com")
    assert not is_followup_for("followups", "not json", "jane@acme.com")
    assert not is_followup_for("followups", json.dumps({"name": "followup_email"}), "j@a.com")
