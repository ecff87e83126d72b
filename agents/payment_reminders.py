"""Which payment reminder an overdue invoice is due for today. Pure.

Stages are days after the due date (``SOLOOPS_INVOICES__REMINDER_DAYS``, default
3, 10, 20: friendly, firm, final). Checked once a day, or late after downtime:

- nothing for an invoice that is not ``sent`` (paid or void ones stop at once);
- otherwise the *latest* stage whose day has come, if it has not been sent yet. A run
  that missed several days (or stages) catches up with ONE reminder, in the tone the
  invoice has reached by now, instead of one per missed day or none at all
  (invoiceninja#637 skipped them). Earlier stages that were passed over are not sent
  afterwards: ``already_sent`` becomes the stage sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

from memory.invoices import InvoiceState

Tone = Literal["friendly", "firm", "final"]


class OverdueInvoice(Protocol):
    """What the decision needs to know about an invoice."""

    @property
    def state(self) -> InvoiceState: ...

    @property
    def due_date(self) -> date: ...


@dataclass(frozen=True, slots=True)
class DueReminder:
    """The reminder to send now: its 1-based stage, tone, and how late the invoice is."""

    stage: int
    tone: Tone
    days_overdue: int
    caught_up: bool


def tone_of(stage: int, stages: int) -> Tone:
    """First stage friendly, last final, the ones between firm."""
    if stage >= stages:
        return "final"
    return "friendly" if stage == 1 else "firm"


def overdue_reminders(
    invoice: OverdueInvoice, today: date, stages: Sequence[int], already_sent: int
) -> DueReminder | None:
    """The reminder due today, or None (see the module rules).

    ``already_sent`` is the highest stage sent so far (0 for none); ``caught_up`` is
    True when the reminder's own day was earlier than today (soloops was down or late).
    """
    if invoice.state != InvoiceState.SENT:
        return None
    late = (today - invoice.due_date).days
    reached = [i for i, day in enumerate(stages, start=1) if late >= day]
    if not reached or reached[-1] <= already_sent:
        return None
    stage = reached[-1]
    return DueReminder(
        stage=stage,
        tone=tone_of(stage, len(stages)),
        days_overdue=late,
        caught_up=late > stages[stage - 1],
    )
