from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from agents.payment_reminders import DueReminder, overdue_reminders, tone_of
from memory.invoices import InvoiceState

DUE = date(2026, 11, 1)
STAGES = (3, 10, 20)


@dataclass(frozen=True)
class Inv:
    state: InvoiceState = InvoiceState.SENT
    due_date: date = DUE


def on(days_late: int, sent: int = 0, inv: Inv | None = None) -> DueReminder | None:
    return overdue_reminders(inv or Inv(), DUE + timedelta(days=days_late), STAGES, sent)


def test_each_stage_comes_on_its_day_once() -> None:
    assert on(2) is None
    assert on(3) == DueReminder(1, "friendly", 3, caught_up=False)
    assert on(4, sent=1) is None
    assert on(10, sent=1) == DueReminder(2, "firm", 10, caught_up=False)
    assert on(20, sent=2) == DueReminder(3, "final", 20, caught_up=False)
    assert on(60, sent=3) is None


def test_missed_days_are_caught_up_once_not_per_day_and_not_skipped() -> None:
    # Down from day 2 to day 12: one reminder, in the tone reached by now.
    late = on(12, sent=0)
    assert late == DueReminder(2, "firm", 12, caught_up=True)
    # The next day's check (after it was recorded) sends nothing more until day 20.
    assert all(on(day, sent=2) is None for day in range(13, 20))
    assert on(25, sent=2) == DueReminder(3, "final", 25, caught_up=True)


def test_paid_or_void_invoices_get_no_reminders() -> None:
    for state in (InvoiceState.PAID, InvoiceState.VOID, InvoiceState.PROPOSED):
        assert on(15, inv=Inv(state=state)) is None


def test_tones() -> None:
    assert [tone_of(i, 3) for i in (1, 2, 3)] == ["friendly", "firm", "final"]
    assert tone_of(1, 1) == "final"
    assert [tone_of(i, 2) for i in (1, 2)] == ["friendly", "final"]
