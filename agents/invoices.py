"""The invoices feature: /invoice, /invoices, payment reminders and recurring invoices.

- ``/invoice Acme 1200 EUR October consulting [to ...] [due in 14 days] [vat 19%]``
  (several lines: ``;`` or new lines) numbers and stores the invoice once per task
  (``memory/invoices.py``: gap-free, keyed by the task's idempotency key), renders its
  PDF in a thread (``agents/invoice_pdf.py``), keeps it in the file store and proposes
  the email with the PDF attached. The approval card shows the PDF (a document on
  Telegram and Slack, its path on the console) and binds its bytes: the attachment's
  content is in the action's params, and the card names its sha256, so any change voids
  the approval. Approved and sent, the invoice is ``sent``; rejected, it is ``void``
  (its number stays used).
- ``/invoices [open|overdue|paid|void|all]``, ``/invoice <no>`` (with its PDF),
  ``/invoice <no> paid [date]``, ``/invoice <no> void`` (for a sent invoice: a
  cancellation email through the gate, the compensation of sending it).
- Payment reminders: the standing job ``invoices.reminders`` (daily at 09:00 local,
  misfire ``once``) proposes, per overdue invoice, the reminder stage
  :func:`agents.payment_reminders.overdue_reminders` says is due (friendly, firm, final;
  one catch-up after missed days), one card after another; a sent one is recorded
  (``record_reminder``) so it never repeats, and a paid invoice gets none.
- Recurring: ``/invoice Acme 500 EUR retainer every month on the 1st`` adds a job whose
  each run creates and proposes the next invoice (its own number, its own approval).
- :meth:`InvoicesAgent.due`: unpaid and overdue invoices for the digest and ``/today``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from agents.actions import Action, Propose, Risk
from agents.base import ActionReport, Agent, AgentResult, TaskContext
from agents.errors import ConfigurationError, Refusal
from agents.feature import CommandSpec, Feature
from agents.intents import Conversation, Intent
from agents.policy import Rule
from agents.ports import Ports
from agents.replies import Attachment, Reply
from agents.scheduler import JobSpec
from agents.schedules import ScheduleError
from config import Settings
from memory.contacts import ContactRepo
from memory.errors import NotFoundError
from memory.invoices import OPEN_STATES, Invoice, InvoiceMoveError, InvoiceRepo, InvoiceState

if TYPE_CHECKING:
    from agents.invoice_grammar import InvoiceDraft
    from agents.payment_reminders import DueReminder
    from memory.digest_facts import Section

# The grammar, the texts, money formatting, the PDF and the reminder stages (about a
# tenth of start-up's imports) are imported where an invoice is handled: a start that
# only answers /help never loads them (tests/bot/test_startup.py).

NAME = "invoices"
REMINDER_JOB = "invoices.reminders"
REMINDER_TIME = "every day at 9:00"
EMAIL_SETUP = (
    "Invoices are sent by email, which is not set up: set SOLOOPS_EMAIL__HOST and"
    " SOLOOPS_EMAIL__FROM_ADDRESS (see the README, Email), then try again."
)
_FILTER_STATES: dict[str, frozenset[InvoiceState]] = {
    "open": OPEN_STATES,
    "paid": frozenset({InvoiceState.PAID}),
    "void": frozenset({InvoiceState.VOID}),
    "all": frozenset(InvoiceState),
}


class InvoiceIntent(Intent):
    """``/invoice ...``: a new invoice (or a recurring one), or one invoice's command."""

    kind: Literal["invoice"] = "invoice"
    text: str = Field(min_length=1, max_length=4000)


class InvoicesIntent(Intent):
    """``/invoices [open|overdue|paid|void|all]``."""

    kind: Literal["invoices"] = "invoices"
    filter: str = Field(default="", max_length=40)


class InvoiceRemindersIntent(Intent):
    """The daily payment-reminder check (the ``invoices.reminders`` job)."""

    kind: Literal["invoice_reminders"] = "invoice_reminders"


class RecurringInvoiceIntent(Intent):
    """One run of a recurring invoice: create and propose the next one."""

    kind: Literal["invoice_recurring"] = "invoice_recurring"
    text: str = Field(min_length=1, max_length=4000)


def local_today(now: datetime, timezone: str) -> date:
    """The operator's calendar day at ``now``."""
    return now.astimezone(ZoneInfo(timezone)).date()


def without_recurrence(text: str, recurrence: str) -> str | None:
    """``text`` with its ``every ...`` words taken out (what each run invoices), or None
    when they are not written together."""
    words = r"\s+".join(re.escape(word) for word in recurrence.split())
    pattern = re.compile(rf"\s*\b{words}(?=\s|;|$)", re.IGNORECASE)
    kept, found = pattern.subn("", text, count=1)
    return kept.strip() if found else None


def recurring_job_id(key: str) -> str:
    """A stable job id for the recurring invoice one message created."""
    return f"invoices.recurring.{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class InvoicesAgent(Agent):
    """Issues invoices, sends them once approved, reminds and records payments."""

    name = NAME

    def __init__(self, ports: Ports, repo: InvoiceRepo, contacts: ContactRepo) -> None:
        self._ports = ports
        self._repo = repo
        self._contacts = contacts
        self._settings = ports.settings.invoices

    # ---- entry points --------------------------------------------------------------

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        from agents.grammar import Refusal as GrammarRefusal
        from agents.invoice_grammar import (
            InvoiceDraft,
            MarkPaid,
            ShowInvoice,
            VoidInvoice,
            parse_invoice,
        )

        today = self._today()
        match intent:
            case InvoiceIntent(text=text):
                command = parse_invoice(text, today=today)
                if isinstance(command, GrammarRefusal):
                    raise Refusal(command.message)
                match command:
                    case InvoiceDraft(recurrence=None):
                        return await self._issue(command, ctx.idempotency_key, intent)
                    case InvoiceDraft():
                        return await self._make_recurring(command, text, ctx, intent)
                    case ShowInvoice(number=number):
                        return await self._show(await self._get(number), today)
                    case MarkPaid(number=number, paid_on=paid_on):
                        return await self._mark_paid(number, paid_on, intent)
                    case VoidInvoice(number=number):
                        return await self._void(await self._get(number), intent)
            case InvoicesIntent(filter=chosen):
                return await self._list(chosen, today)
            case InvoiceRemindersIntent():
                return await self._next_reminder(today, after=None, last=None)
            case RecurringInvoiceIntent(text=text):
                command = parse_invoice(text, today=today)
                if isinstance(command, GrammarRefusal):
                    raise Refusal(f"The recurring invoice cannot be made: {command.message}")
                if not isinstance(command, InvoiceDraft):
                    raise Refusal(f"The recurring invoice {text!r} is not an invoice.")
                return await self._issue(command, ctx.idempotency_key, intent)
        raise AssertionError(f"invoices got an intent it does not handle: {intent.kind}")

    async def on_action(self, intent: Intent, report: ActionReport) -> AgentResult:
        from agents import invoice_texts as texts

        row = await self._ports.reports.action(report.action_id)
        name = row.name if row is not None else ""
        number = texts.number_in(report.summary) or ""
        now = self._ports.clock.now()
        actor = intent.conversation.actor
        if name == "reminder":
            return await self._after_reminder(report, number)
        if name == "cancel":
            if report.outcome != "succeeded":
                return [Reply(text=f"{number} was not voided ({_why(report)}); it stays sent.")]
            await self._repo.move(number, InvoiceState.VOID, now=now, actor=actor)
            return [
                Reply(
                    text=f"{number} is void; the cancellation was emailed. Its number stays used."
                )
            ]
        if report.outcome == "succeeded":
            try:
                invoice = await self._repo.move(number, InvoiceState.SENT, now=now, actor=actor)
            except InvoiceMoveError as exc:
                return [Reply(text=f"The invoice was emailed, but {exc}.", tone="error")]
            total = texts.money(invoice, self._settings)
            return [
                Reply(
                    text=f"Sent {number} ({total}) to {invoice.recipient}. Due"
                    f" {invoice.due_date.isoformat()}; /invoice {number} paid"
                    " when the money arrives."
                )
            ]
        await self._repo.move(number, InvoiceState.VOID, now=now, actor=actor)
        return [
            Reply(
                text=f"Not sent ({_why(report)}): {number} is void, and its number stays"
                " used. Send a corrected one with /invoice."
            )
        ]

    async def due(self, now: datetime, horizon: datetime) -> Section | None:
        """This feature's section of the digest and ``/today`` (None when empty)."""
        from memory.digest_facts import Section

        lines = await self.due_lines(now, horizon - now)
        return Section("Invoices", tuple(lines)) if lines else None

    async def due_lines(self, now: datetime, horizon: timedelta) -> list[str]:
        """Unpaid invoices for the digest and ``/today``: overdue ones, then those due
        within ``horizon``."""
        from agents import invoice_texts as texts

        today = local_today(now, self._ports.settings.timezone)
        end = local_today(now + horizon, self._ports.settings.timezone)
        sent = await self._repo.in_states(frozenset({InvoiceState.SENT}))
        return texts.due_lines(sent, today, end, self._settings)

    # ---- new invoices --------------------------------------------------------------

    def _ready(self) -> None:
        problem = self._settings.problem()
        if problem is not None:
            raise Refusal(problem)
        if not self._ports.settings.email.configured:
            raise Refusal(EMAIL_SETUP)

    async def _recipient(self, draft: InvoiceDraft) -> str:
        from agents.grammar import Refusal as GrammarRefusal
        from agents.invoice_grammar import recipient_for

        if draft.recipient is not None:
            return draft.recipient
        emails = sorted(
            {c.email for c in await self._contacts.contact_by_name(draft.client) if c.email}
        )
        if len(emails) > 1:
            raise Refusal(
                f"Several contacts match {draft.client} ({', '.join(emails)}): say which, e.g."
                f" /invoice {draft.client} ... to {emails[0]}"
            )
        chosen = recipient_for(draft, emails[0] if emails else None)
        if isinstance(chosen, GrammarRefusal):
            raise Refusal(chosen.message)
        return chosen

    async def _issue(self, draft: InvoiceDraft, key: str, intent: Intent) -> Propose:
        """Number, render, keep and propose one invoice (each step once per task)."""
        from agents import invoice_texts as texts
        from agents.invoice_pdf import pdf_sha256

        invoice = await self._repo.by_key(key)
        if invoice is None:
            self._ready()
            recipient = await self._recipient(draft)
            new = texts.new_invoice(
                draft, recipient, self._today(), self._settings.payment_terms_days
            )
            invoice, _ = await self._repo.create(
                new,
                idempotency_key=key,
                now=self._ports.clock.now(),
                actor=intent.conversation.actor,
            )
        pdf, _ = await self._pdf(invoice)
        sha = pdf_sha256(pdf)
        if invoice.state is InvoiceState.DRAFT:
            invoice = await self._repo.move(
                invoice.number,
                InvoiceState.PROPOSED,
                now=self._ports.clock.now(),
                actor=NAME,
                pdf_sha256=sha,
            )
        if invoice.state is not InvoiceState.PROPOSED:
            raise Refusal(f"{invoice.number} is {invoice.state.value} already; nothing to send.")
        email = texts.invoice_email(invoice, pdf, sha, self._settings)
        return Propose(
            Action(
                name="send",
                connector="email",
                operation="send",
                params=email.params,
                summary=email.summary,
                risk=Risk(amount=invoice.total, currency=invoice.currency),
            )
        )

    async def _pdf(self, invoice: Invoice) -> tuple[bytes, Attachment]:
        """The invoice's PDF (rendered in a thread: ~0.3 s of CPU), kept in the file store."""
        from agents import invoice_texts as texts
        from agents.invoice_pdf import render_invoice_pdf

        pdf = await asyncio.to_thread(
            render_invoice_pdf, texts.document_of(invoice, self._settings)
        )
        filename = texts.pdf_filename(invoice)
        path = await self._ports.files.save(pdf, filename)
        return pdf, Attachment(path=str(path), filename=filename, mime=texts.PDF_MIME)

    async def _make_recurring(
        self, draft: InvoiceDraft, text: str, ctx: TaskContext, intent: Intent
    ) -> list[Reply]:
        from agents.money import format_money

        self._ready()
        await self._recipient(draft)  # refused now rather than at every run
        job_id = recurring_job_id(ctx.idempotency_key)
        assert draft.recurrence is not None  # matched by the caller
        each = without_recurrence(text, draft.recurrence)
        if each is None:
            raise Refusal(
                f"Write the schedule in one piece, e.g. /invoice {draft.client} 500 EUR retainer"
                " every month on the 1st to billing@example.com"
            )
        spec = JobSpec(
            id=job_id,
            owner=NAME,
            intent_kind="invoice_recurring",
            schedule=draft.recurrence,
            payload={
                "conversation": intent.conversation.model_dump(mode="json"),
                "text": each,
            },
            misfire="once",
        )
        try:
            job = await self._ports.schedules.add(spec)
        except ScheduleError as exc:
            raise Refusal(
                f"I cannot read {draft.recurrence!r} as a schedule: {exc}. Write e.g."
                f" /invoice {draft.client} 500 EUR retainer every month on the 1st"
            ) from None
        total = format_money(draft.totals().total, draft.currency, self._settings.locale)
        nxt = (
            f" Next: {job.next_run_at.astimezone(ZoneInfo(job.timezone)):%Y-%m-%d %H:%M}"
            f" {job.timezone}."
            if job.next_run_at
            else ""
        )
        return [
            Reply(
                text=f"Recurring invoice for {draft.client} ({total}) set:"
                f" {draft.recurrence} (job {job.id}). Each run issues the next"
                f" invoice and asks you before sending it.{nxt}"
            )
        ]

    # ---- one invoice ---------------------------------------------------------------

    async def _get(self, number: str) -> Invoice:
        invoice = await self._repo.get(number)
        if invoice is None:
            raise Refusal(f"There is no invoice {number}. /invoices all lists them.")
        return invoice

    async def _show(self, invoice: Invoice, today: date) -> list[Reply]:
        from agents import invoice_texts as texts

        _, attachment = await self._pdf(invoice)
        text = texts.invoice_detail(invoice, today, self._settings)
        return [Reply(text=text, attachments=(attachment,))]

    async def _mark_paid(self, number: str, paid_on: date, intent: Intent) -> list[Reply]:
        try:
            invoice = await self._repo.move(
                number,
                InvoiceState.PAID,
                now=self._ports.clock.now(),
                actor=intent.conversation.actor,
                paid_on=paid_on,
            )
        except NotFoundError:
            raise Refusal(f"There is no invoice {number}. /invoices all lists them.") from None
        except InvoiceMoveError as exc:
            raise Refusal(f"Cannot mark it paid: {exc}. Only a sent invoice can be paid.") from None
        return [Reply(text=f"{number} is paid ({invoice.paid_at}). No more reminders for it.")]

    async def _void(self, invoice: Invoice, intent: Intent) -> AgentResult:
        from agents import invoice_texts as texts

        number = invoice.number
        if invoice.state is InvoiceState.DRAFT:
            await self._repo.move(
                number,
                InvoiceState.VOID,
                now=self._ports.clock.now(),
                actor=intent.conversation.actor,
            )
            return [Reply(text=f"{number} is void (it was never sent); its number stays used.")]
        if invoice.state is InvoiceState.PROPOSED:
            raise Refusal(
                f"{number} is waiting for your approval: reject its card instead"
                " (/pending shows it)."
            )
        if invoice.state is not InvoiceState.SENT:
            raise Refusal(f"{number} is {invoice.state.value}; it cannot be voided.")
        if not self._ports.settings.email.configured:
            raise Refusal(EMAIL_SETUP)
        email = texts.cancellation_email(invoice, self._settings)
        return Propose(
            Action(
                name="cancel",
                connector="email",
                operation="send",
                params=email.params,
                summary=email.summary,
            )
        )

    async def _list(self, chosen: str, today: date) -> list[Reply]:
        from agents import invoice_texts as texts
        from agents.grammar import Refusal as GrammarRefusal
        from agents.invoice_grammar import parse_invoices

        parsed = parse_invoices(chosen)
        if isinstance(parsed, GrammarRefusal):
            raise Refusal(parsed.message)
        if parsed.filter == "overdue":
            found = await self._repo.overdue(today)
        else:
            found = await self._repo.in_states(_FILTER_STATES[parsed.filter])
        return [Reply(text=texts.listing(parsed.filter, found, today, self._settings))]

    # ---- payment reminders ---------------------------------------------------------

    async def _next_reminder(
        self, today: date, *, after: str | None, last: str | None
    ) -> AgentResult:
        """Propose the next due reminder after invoice ``after`` (by number), or finish."""
        from agents.payment_reminders import overdue_reminders

        stages = self._settings.reminder_days
        waiting = await self._waiting_reminders()
        for invoice in await self._repo.overdue(today):
            if after is not None and (invoice.year, invoice.seq) <= _order(after):
                continue
            due = overdue_reminders(invoice, today, stages, invoice.reminders_sent)
            if due is None or invoice.number in waiting or not invoice.recipient:
                continue
            return await self._propose_reminder(invoice, due)
        return [] if last is None else [Reply(text=last)]

    async def _propose_reminder(self, invoice: Invoice, due: DueReminder) -> Propose:
        from agents import invoice_texts as texts

        pdf, _ = await self._pdf(invoice)
        email = texts.reminder_email(
            invoice, due, len(self._settings.reminder_days), pdf, self._settings
        )
        return Propose(
            Action(
                name="reminder",
                connector="email",
                operation="send",
                params=email.params,
                summary=email.summary,
                risk=Risk(amount=invoice.total, currency=invoice.currency),
            )
        )

    async def _waiting_reminders(self) -> set[str]:
        """Invoices whose reminder already waits on a card (never proposed twice)."""
        from agents import invoice_texts as texts

        rows = await self._ports.approvals.pending("action")
        return {
            number
            for row in rows
            if row.agent == NAME
            and texts.stage_in(row.summary) is not None
            and (number := texts.number_in(row.summary)) is not None
        }

    async def _after_reminder(self, report: ActionReport, number: str) -> AgentResult:
        from agents import invoice_texts as texts

        stage = texts.stage_in(report.summary) or 0
        if report.outcome == "succeeded":
            await self._repo.record_reminder(number, stage, now=self._ports.clock.now())
            said = f"Payment reminder {stage} for {number} sent."
        else:
            said = f"Payment reminder {stage} for {number} not sent ({_why(report)})."
        return await self._next_reminder(self._today(), after=number, last=said)

    def _today(self) -> date:
        return local_today(self._ports.clock.now(), self._ports.settings.timezone)


def _order(number: str) -> tuple[int, int]:
    _, year, seq = number.split("-")
    return int(year), int(seq)


def _why(report: ActionReport) -> str:
    return report.reason or (f"rejected by {report.by}" if report.by else report.outcome)


def build(ports: Ports) -> InvoicesAgent:
    """The invoices agent over the invoice and contact records."""
    if ports.invoices is None or ports.contacts is None:
        raise ConfigurationError("feature 'invoices' needs the invoice and contact records")
    return InvoicesAgent(ports, ports.invoices, ports.contacts)


def jobs(settings: Settings, homes: tuple[Conversation, ...]) -> Sequence[JobSpec]:
    """The daily payment-reminder check, answering in the first home conversation."""
    if not homes:
        return []
    return [
        JobSpec(
            id=REMINDER_JOB,
            owner=NAME,
            intent_kind="invoice_reminders",
            schedule=REMINDER_TIME,
            payload={"conversation": homes[0].model_dump(mode="json")},
            misfire="once",
        )
    ]


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


FEATURE = Feature(
    name=NAME,
    build=build,
    bind="invoice",  # plain text in a topic bound to invoices is a /invoice
    intents=(InvoiceIntent, InvoicesIntent, InvoiceRemindersIntent, RecurringInvoiceIntent),
    commands=(
        CommandSpec(
            "invoice",
            "invoice",
            "invoice <client> <amount> <currency> <what> [to <email>] [due in 14 days]"
            " [vat 19%] [every month on the 1st] | invoice <no> [paid [date] | void]",
            "bill a client (a PDF, emailed once you approve)",
            "/invoice Acme 1200 EUR October consulting to billing@acme.com vat 19%",
            "text",
            _text,
        ),
        CommandSpec(
            "invoices",
            "invoices",
            "invoices [open|overdue|paid|void|all]",
            "list invoices",
            "/invoices overdue",
            "optional_text",
            lambda text: {"filter": text},
        ),
    ),
    capabilities=frozenset({("email", "send")}),
    optional_connectors=frozenset({"email"}),
    policies={"send": Rule(), "reminder": Rule(), "cancel": Rule()},
    jobs=jobs,
)
