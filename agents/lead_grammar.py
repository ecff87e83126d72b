"""The ``/lead`` and ``/leads`` grammar, and "new lead: ..." free text. Pure (no I/O).

Forms::

    /lead Jane Doe jane@acme.com wants a new site      name, email, note
    /lead Jane from Acme jane@acme.com wants a site    "from/at <Company>" names the company
    new lead: Jane from Acme, jane@acme.com, wants a site
    /lead 12                                          show lead 12 and its history
    /lead 12 stage won                                move it (new contacted proposal won lost)
    /leads [stage]

A new lead needs an email address: contacts are deduplicated by it and follow-ups are
sent to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agents.grammar import Refusal, after_command, choose, command, read_email

Stage = Literal["new", "contacted", "proposal", "won", "lost"]
STAGES: tuple[Stage, ...] = ("new", "contacted", "proposal", "won", "lost")
USAGE = "Write e.g. /lead Jane Doe jane@acme.com wants a new site."

_COMMAND = command("lead")
_FREE = re.compile(r"^\s*(?:new\s+lead|lead)\s*[:\-]\s*(?P<rest>.+)$", re.IGNORECASE | re.DOTALL)
_COMPANY = re.compile(r"^(?P<name>.+?)\s+(?:from|at|of)\s+(?P<company>.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class NewLead:
    """A lead to record (and its contact to create or find by email)."""

    name: str
    email: str
    company: str | None
    note: str


@dataclass(frozen=True, slots=True)
class ShowLead:
    """``/lead <id>``."""

    lead_id: int


@dataclass(frozen=True, slots=True)
class SetStage:
    """``/lead <id> stage <stage>``."""

    lead_id: int
    stage: Stage


@dataclass(frozen=True, slots=True)
class ListLeads:
    """``/leads [stage]``; ``stage`` None lists the open ones (not won or lost)."""

    stage: Stage | None


def parse_stage(word: str) -> Stage | None:
    """The stage ``word`` names (case-insensitive), or None."""
    return choose(word, STAGES)


def parse_lead(text: str) -> NewLead | ShowLead | SetStage | Refusal:
    """Parse one ``/lead`` message (the command word is optional)."""
    body = after_command(_COMMAND, text)
    if not body:
        return Refusal(USAGE)
    words = body.split()
    lead_id = words[0].lstrip("#")
    if lead_id.isdigit():
        return _about(int(lead_id), words[1:])
    return _new_lead(words)


def parse_leads(text: str) -> ListLeads | Refusal:
    """Parse ``/leads [stage]``."""
    words = after_command(_COMMAND, text).split()
    if not words:
        return ListLeads(None)
    stage = parse_stage(words[0]) if len(words) == 1 else None
    if stage is None:
        return Refusal("Write /leads, or /leads " + " | ".join(STAGES) + ".")
    return ListLeads(stage)


def parse_free_lead(text: str) -> NewLead | Refusal | None:
    """Read "new lead: Jane from Acme, jane@acme.com, wants a site"; None if not a lead."""
    match = _FREE.match(text)
    if match is None:
        return None
    parts = [part.strip() for part in re.split(r"[,;\n]", match.group("rest")) if part.strip()]
    return _new_lead(" , ".join(parts).split())


def _about(lead_id: int, rest: list[str]) -> ShowLead | SetStage | Refusal:
    if not rest:
        return ShowLead(lead_id)
    if rest[0].lower() == "stage" and len(rest) == 2:
        stage = parse_stage(rest[1])
        if stage is not None:
            return SetStage(lead_id, stage)
    return Refusal(
        f"Write /lead {lead_id} to see it, or /lead {lead_id} stage <" + "|".join(STAGES) + ">."
    )


def _new_lead(words: list[str]) -> NewLead | Refusal:
    at = next((i for i, word in enumerate(words) if "@" in word), None)
    if at is None:
        return Refusal("A new lead needs an email address (to find and follow up). " + USAGE)
    email = read_email(words[at])
    if isinstance(email, Refusal):
        return email
    who = " ".join(words[:at]).strip(" ,;:")
    note = " ".join(words[at + 1 :]).strip(" ,;:-")
    if not who:
        return Refusal("Say the lead's name before the email address. " + USAGE)
    # A comma after the name starts the note ("Jane from Acme, wants a site, jane@...").
    who, _, before_note = who.partition(",")
    note = ", ".join(part.strip(" ,") for part in (before_note, note) if part.strip(" ,"))
    company = None
    match = _COMPANY.match(who.strip())
    if match:
        who, company = match.group("name"), match.group("company").strip(" ,")
    return NewLead(name=" ".join(who.split()), email=email.lower(), company=company, note=note)
