from __future__ import annotations

import pytest

from agents.lead_grammar import (
    ListLeads,
    NewLead,
    Refusal,
    SetStage,
    ShowLead,
    parse_free_lead,
    parse_lead,
    parse_leads,
    parse_stage,
)


def test_new_lead_from_the_command() -> None:
    assert parse_lead("/lead Jane Doe jane@acme.com wants a new site") == NewLead(
        "Jane Doe", "jane@acme.com", None, "wants a new site"
    )
    assert parse_lead("/lead Jane from Acme <Jane@Acme.com> wants a site") == NewLead(
        "Jane", "jane@acme.com", "Acme", "wants a site"
    )


def test_new_lead_from_free_text() -> None:
    assert parse_free_lead("new lead: Jane from Acme, jane@acme.com, wants a site") == NewLead(
        "Jane", "jane@acme.com", "Acme", "wants a site"
    )
    assert parse_free_lead("New lead - Bob Smith at Initech, bob@initech.io") == NewLead(
        "Bob Smith", "bob@initech.io", "Initech", ""
    )
    assert parse_free_lead("remember that the door code is 1234") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/lead Jane", "needs an email address"),
        ("/lead Jane jane@acme", "'jane@acme' is not an email address"),
        ("/lead jane@acme.com wants a site", "name before the email"),
        ("/lead", "Write e.g. /lead Jane Doe"),
        ("/lead 12 stage maybe", "stage <new|contacted|proposal|won|lost>"),
        ("/lead 12 close", "/lead 12 to see it"),
    ],
)
def test_bad_lead_input(text: str, message: str) -> None:
    result = parse_lead(text)
    assert isinstance(result, Refusal) and message in result.message
    free = parse_free_lead("new lead: Jane, no email")
    assert isinstance(free, Refusal) and "email" in free.message


def test_show_and_stage() -> None:
    assert parse_lead("/lead 12") == ShowLead(12)
    assert parse_lead("/lead #12 stage Won") == SetStage(12, "won")
    assert parse_stage("PROPOSAL") == "proposal"
    assert parse_stage("maybe") is None


def test_listing() -> None:
    assert parse_leads("/leads") == ListLeads(None)
    assert parse_leads("/leads lost") == ListLeads("lost")
    bad = parse_leads("/leads hot")
    assert isinstance(bad, Refusal) and "new | contacted" in bad.message
