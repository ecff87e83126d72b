"""The leads feature: contacts and leads, from chat, free text and a website form.

- ``/lead Jane Doe jane@acme.com wants a new site`` (or "new lead: Jane from Acme,
  jane@acme.com, wants a site" in plain words) records a lead and its contact (deduped
  by email) once per message;
- the ``lead`` intent takes the same as fields (name, email, note, company, source,
  value), for an inbound hook such as a website form;
- ``/leads [stage]``, ``/lead <id>`` (its whole history), ``/lead <id> stage won``.

Everything said about a contact also becomes a memory in the ``leads`` namespace, which
the notes feature's /recall reads too ("what did Jane want?"); only this feature
writes or deletes there.

A new lead gets its follow-up: this feature schedules a one-off job
``followup:lead:<id>`` at the lead's time + ``SOLOOPS_FOLLOWUPS__AFTER``, whose intent
is the follow-ups feature's ``followup_due`` (the job is this feature's; the draft,
the card and the email are the follow-ups feature's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from agents.approvals import DecisionStatus
from agents.base import Agent, AgentResult, TaskContext
from agents.email_syntax import bad_email_message, is_email
from agents.errors import Refusal
from agents.feature import CommandSpec, Feature, Phrasings
from agents.grammar import Refusal as GrammarRefusal
from agents.intents import Conversation, Intent
from agents.lead_grammar import (
    STAGES,
    ListLeads,
    NewLead,
    SetStage,
    ShowLead,
    Stage,
    parse_free_lead,
    parse_lead,
    parse_leads,
)
from agents.ports import ApprovalsView, Ports
from agents.replies import Reply
from agents.schedule_port import FeatureSchedules
from agents.scheduler import JobSpec
from memory.clock import Clock
from memory.contacts import ContactRepo, HistoryEntry, Lead, LeadStage
from memory.errors import NotFoundError
from memory.semantic import MemorySpace

if TYPE_CHECKING:
    from memory.digest_facts import Section

NAMESPACE = "leads"
FOLLOWUP_KIND = "followup_due"
CHAT_PLATFORMS = frozenset({"console", "telegram", "slack"})
_NOTE_SHOWN = 160


def followup_job_id(lead_id: int) -> str:
    """The id of a lead's automatic follow-up job."""
    return f"followup:lead:{lead_id}"


class LeadIntent(Intent):
    """A new lead as fields: what a website form posts to an inbound hook."""

    kind: Literal["lead"] = "lead"
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    note: str = Field(default="", max_length=4000)
    company: str | None = Field(default=None, max_length=200)
    source: str = Field(default="form", min_length=1, max_length=64)
    value: Decimal | None = Field(default=None, ge=0, le=Decimal("1e12"))
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")

    @field_validator("name", "source")
    @classmethod
    def _one_line(cls, value: str) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError("must not be blank")
        return cleaned

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        address = value.strip().lower()
        if not is_email(address):
            raise ValueError(bad_email_message(value.strip()))
        return address


class LeadChatIntent(Intent):
    """``/lead ...``, or a plain "new lead: ..." message the router took for a lead,
    read by the lead grammar (a routed one only ever adds a lead: it says nothing else)."""

    kind: Literal["lead_chat"] = "lead_chat"
    text: str = Field(min_length=1, max_length=4000)


class LeadsIntent(Intent):
    """``/leads [stage]``: the open leads, or those in one stage."""

    kind: Literal["leads"] = "leads"
    stage: Stage | None = None


def lead_line(lead: Lead) -> str:
    """One lead in a list: id, stage, who, and the start of its note."""
    who = f"{lead.name} <{lead.email}>" + (f", {lead.company}" if lead.company else "")
    note = " ".join(lead.note.split())
    if len(note) > _NOTE_SHOWN:
        note = note[: _NOTE_SHOWN - 1] + "…"
    value = f" [{lead.value} {lead.currency or ''}]".rstrip() if lead.value is not None else ""
    return f"#{lead.id} {lead.stage.value}: {who}{value}" + (f" — {note}" if note else "")


def history_line(entry: HistoryEntry, tz: ZoneInfo) -> str:
    """One entry of a lead's history, in the operator's time zone."""
    at = f"{entry.at.astimezone(tz):%Y-%m-%d %H:%M}"
    detail = entry.detail
    match entry.kind:
        case "created":
            text = f"created (from {detail.get('source', '?')})"
            if detail.get("note"):
                text += f": {detail['note']}"
        case "stage":
            text = f"stage {detail.get('from')} -> {detail.get('to')} by {detail.get('by')}"
        case "email_sent":
            text = f"email sent to {detail.get('to')}: {detail.get('subject')}"
        case "followup_scheduled":
            text = f"follow-up set for {detail.get('due')}"
        case "followup_skipped":
            text = f"follow-up not sent: {detail.get('reason')}"
        case "invoice":
            text = f"invoice {detail.get('number', '')} {detail.get('summary', '')}".rstrip()
        case _:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(detail.items()))
            text = f"{entry.kind.replace('_', ' ')}" + (f": {shown}" if shown else "")
    return f"{at} {text}"


def render_lead(lead: Lead, history: Sequence[HistoryEntry], tz: ZoneInfo) -> str:
    """``/lead <id>``: the lead and everything that happened to it."""
    lines = [lead_line(lead), f"Source: {lead.source}. History:"]
    lines += [f"  {history_line(entry, tz)}" for entry in history]
    return "\n".join(lines)


def memory_of_lead(lead: Lead) -> str:
    """What memory keeps about a new lead (found again by /recall)."""
    company = f" from {lead.company}" if lead.company else ""
    wants = f" {lead.note}" if lead.note else " (no note)"
    return f"Lead #{lead.id}: {lead.name}{company} <{lead.email}> —{wants}. Source: {lead.source}."


class LeadsAgent(Agent):
    """Keeps contacts and leads, and sets up each new lead's follow-up."""

    name = "leads"

    def __init__(
        self,
        contacts: ContactRepo,
        space: MemorySpace,
        schedules: FeatureSchedules,
        clock: Clock,
        *,
        followup_after: timedelta,
        timezone: str = "UTC",
        homes: Sequence[Conversation] = (),
        approvals: ApprovalsView | None = None,
    ) -> None:
        self._contacts = contacts
        self._approvals = approvals
        self._space = space
        self._schedules = schedules
        self._clock = clock
        self._after = followup_after
        self._tz = ZoneInfo(timezone)
        self._homes = tuple(homes)

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        match intent:
            case LeadIntent():
                new = NewLead(intent.name, intent.email, intent.company, intent.note.strip())
                return await self._new(
                    new, intent, ctx, source=intent.source, value=intent.value,
                    currency=intent.currency,
                )  # fmt: skip
            case LeadChatIntent(text=text):
                # "new lead: ..." (also "got a new lead ...") first, then the /lead forms.
                free = parse_free_lead(_LEAD_PREFIX.sub("new lead: ", text, count=1))
                parsed = parse_lead(text) if free is None else free
                if isinstance(parsed, GrammarRefusal):
                    raise Refusal(parsed.message)
                if isinstance(parsed, NewLead):
                    return await self._new(parsed, intent, ctx, source="chat")
                if isinstance(parsed, ShowLead):
                    return [Reply(text=await self._show(parsed.lead_id))]
                return [Reply(text=await self._stage(parsed, intent.conversation.actor))]
            case LeadsIntent(stage=stage):
                return [Reply(text=await self._list(stage))]
        raise AssertionError(f"leads got an intent it does not handle: {intent.kind}")

    async def due(self, now: datetime, horizon: datetime) -> Section | None:
        """This feature's section of the digest and ``/today`` (None when empty)."""
        from memory.digest_facts import Section

        lines = await self.due_lines(now, horizon - now)
        return Section("Leads", tuple(lines)) if lines else None

    async def due_lines(self, now: datetime, horizon: timedelta) -> list[str]:
        """Due-items lines for the digest and ``/today``: new leads nobody contacted yet."""
        waiting = [
            lead
            for lead in await self._contacts.leads(LeadStage.NEW)
            if lead.created_at + self._after <= now + horizon
        ]
        return [f"Lead #{lead.id} {lead.name}: not contacted yet" for lead in waiting]

    async def _new(
        self,
        new: NewLead,
        intent: Intent,
        ctx: TaskContext,
        *,
        source: str,
        value: Decimal | None = None,
        currency: str | None = None,
    ) -> list[Reply]:
        known = await self._contacts.contact_by_email(new.email)
        lead, _ = await self._contacts.create_lead(
            source_key=ctx.idempotency_key,
            name=new.name,
            email=new.email,
            company=new.company,
            note=new.note,
            source=source,
            now=self._clock.now(),
            value=value,
            currency=currency,
        )
        # Keyed by the lead: a rerun of this task finds the memory instead of adding it.
        await self._space.remember(
            memory_of_lead(lead), source_key=f"lead:{lead.id}:created", actor=self.name
        )
        due = await self._schedule_followup(lead, intent.conversation)
        lines = [f"Lead #{lead.id} saved: {lead_line(lead)[len(f'#{lead.id} ') :]}"]
        if known is not None:
            lines.append(f"{known.name} <{known.email}> is a contact already; added to them.")
        lines.append(
            f"Follow-up draft due {due.astimezone(self._tz):%a %d %b %H:%M %Z}"
            f" (/followup {lead.id} in 3 days moves it; /lead {lead.id} stage won stops it)."
        )
        return [Reply(text="\n".join(lines))]

    async def _schedule_followup(self, lead: Lead, conversation: Conversation) -> datetime:
        # From the stored creation time, so a rerun of the task declares the same job.
        due = lead.created_at + self._after
        answer_in = conversation
        if conversation.platform not in CHAT_PLATFORMS and self._homes:
            answer_in = self._homes[0]  # a website form: the card goes to the operator's home
        await self._schedules.add(
            JobSpec(
                id=followup_job_id(lead.id),
                owner=self.name,
                intent_kind=FOLLOWUP_KIND,
                schedule=due.isoformat(),
                payload={"conversation": answer_in.model_dump(mode="json"), "lead_id": lead.id},
            )
        )
        return due

    async def _show(self, lead_id: int) -> str:
        lead = await self._contacts.get_lead(lead_id)
        if lead is None:
            raise Refusal(f"There is no lead #{lead_id}. /leads lists them.")
        return render_lead(lead, await self._contacts.history(lead_id), self._tz)

    async def _stage(self, change: SetStage, actor: str) -> str:
        try:
            before = await self._contacts.get_lead(change.lead_id)
            lead = await self._contacts.set_stage(
                change.lead_id, LeadStage(change.stage), now=self._clock.now(), actor=actor
            )
        except NotFoundError:
            raise Refusal(f"There is no lead #{change.lead_id}. /leads lists them.") from None
        if before is not None and before.stage == lead.stage:
            return f"Lead #{lead.id} is {lead.stage.value} already."
        await self._space.remember(
            f"Lead #{lead.id} ({lead.name} <{lead.email}>) moved from"
            f" {before.stage.value if before else '?'} to {lead.stage.value}.",
            source_key=f"lead:{lead.id}:stage:{lead.updated_at.isoformat()}",
            actor=self.name,
        )
        closed = ""
        if lead.stage in _CLOSED:
            closed = " No more follow-ups will be sent."
            withdrawn = await self._withdraw_followups(lead)
            if withdrawn:
                codes = ", ".join(withdrawn)
                closed += f" The follow-up card waiting for approval ({codes}) is withdrawn."
        return f"Lead #{lead.id} ({lead.name}) is {lead.stage.value} now.{closed}"

    async def _withdraw_followups(self, lead: Lead) -> list[str]:
        """Reject the follow-up cards still waiting for this lead: approving one later
        would email a client who has already said yes or no."""
        if self._approvals is None or not lead.email:
            return []
        withdrawn = []
        for row in await self._approvals.pending("action"):
            if is_followup_for(row.agent, row.action, lead.email):
                result = await self._approvals.withdraw(row, f"lead #{lead.id} {lead.stage.value}")
                if result.status is DecisionStatus.APPLIED:
                    withdrawn.append(row.code)
        return withdrawn

    async def _list(self, stage: Stage | None) -> str:
        leads = await self._contacts.leads(None if stage is None else LeadStage(stage))
        if not leads:
            which = f"in stage {stage}" if stage else "open"
            return f"No leads {which}. Add one: /lead Jane Doe jane@acme.com wants a new site"
        title = f"Leads ({stage}):" if stage else "Open leads (new, contacted, proposal):"
        return "\n".join([title, *(lead_line(lead) for lead in leads)])


_CLOSED = frozenset({LeadStage.WON, LeadStage.LOST})
FOLLOWUP_AGENT = "followups"
FOLLOWUP_ACTION = "followup_email"


def is_followup_for(agent: str, action_json: str, email: str) -> bool:
    """Whether a pending card (its agent and the JSON of the action it binds) is the
    follow-up email to ``email``."""
    if agent != FOLLOWUP_AGENT:
        return False
    try:
        spec = json.loads(action_json)
    except ValueError:
        return False
    if not isinstance(spec, dict) or spec.get("name") != FOLLOWUP_ACTION:
        return False
    params = spec.get("params")
    to = params.get("to") if isinstance(params, dict) else None
    return isinstance(to, str) and to.strip().lower() == email.strip().lower()


# "got a new lead: ...", "add a lead ...": the lead grammar reads "new lead: ...".
_LEAD_PREFIX = re.compile(
    r"^\s*(?:(?:got|add|here'?s|there'?s|new)\s+)*(?:an?\s+)?(?:new\s+)?lead\b\s*[:\-]?\s*",
    re.IGNORECASE,
)


def _leads_args(rest: str) -> dict[str, Any]:
    parsed = parse_leads(rest)
    if isinstance(parsed, GrammarRefusal):
        raise ValueError("takes one stage: " + ", ".join(STAGES))
    assert isinstance(parsed, ListLeads)
    return {"stage": parsed.stage}


def build(ports: Ports) -> LeadsAgent:
    """The leads agent over the contacts, its memory namespace and its own jobs."""
    return LeadsAgent(
        ports.require_contacts(),
        ports.memory(NAMESPACE),
        ports.schedules,
        ports.clock,
        followup_after=ports.settings.followups.delay,
        timezone=ports.settings.timezone,
        homes=ports.homes,
        approvals=ports.approvals,
    )


FEATURE = Feature(
    name="leads",
    build=build,
    bind="lead",  # plain text in a topic bound to leads is a /lead
    intents=(LeadIntent, LeadChatIntent, LeadsIntent),
    commands=(
        CommandSpec(
            "lead",
            "lead_chat",
            "lead <name> <email> <note> | lead <id> [stage <stage>]",
            "record a lead, show one with its history, or move it to a stage",
            "/lead Jane Doe jane@acme.com wants a new site",
            "text",
            lambda text: {"text": text},
        ),
        CommandSpec(
            "leads",
            "leads",
            "leads [new|contacted|proposal|won|lost]",
            "the open leads, or those in one stage",
            "/leads proposal",
            "optional_text",
            _leads_args,
        ),
    ),
    phrasings={
        "lead_chat": Phrasings(
            "Record it as a new lead",
            (
                "new lead: Jane, jane@example.com, wants a website",
                "new lead: Bob Smith bob@example.net needs a logo",
                "lead: Maria, maria@example.io, asks for a quote on an audit",
                "new lead Tom tom@example.org wants help with his shop",
                "got a new lead: Ana ana@studio.pt would like a brochure",
                "add a lead: Lee lee@corp.com interested in a retainer",
            ),
            text_field="text",
        ),
        "leads": Phrasings(
            "List the open leads",
            ("show my leads", "list the open leads", "what leads do I have?", "my pipeline"),
        ),
    },
    namespaces=frozenset({NAMESPACE}),
    shared_memory=frozenset({NAMESPACE}),
)
