"""The digest composer against fixtures: every section, all clear, grouping, local time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from agents.digest_compose import (
    ALL_CLEAR,
    NOTHING_NOW,
    AgentActivity,
    BudgetUse,
    CardRef,
    DayCount,
    DeadLetter,
    DigestFacts,
    FailedDelivery,
    Failure,
    PendingApproval,
    ScheduledRun,
    Section,
    age,
    compose_digest,
    compose_today,
)

# 06:00 UTC on a November Tuesday is 07:00 in Berlin (CET, UTC+1).
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
BERLIN = "Europe/Berlin"


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def webhook_down(at: datetime, recovered: datetime | None = None) -> Failure:
    return Failure(
        at=at,
        source="action",
        cause="hook 'crm' answered 503 (after 4 attempts)",
        runbook="webhook-unreachable",
        subject="connector:webhook",
        recovered_at=recovered,
    )


DEAD_CARD = CardRef(approval_id=7, code="K7Q2MX", purpose="dead_letter")
ACTION_CARD = CardRef(approval_id=9, code="P3RTAB", purpose="action")

FULL = DigestFacts(
    now=NOW,
    timezone=BERLIN,
    failures=(
        webhook_down(ago(hours=5)),
        webhook_down(ago(hours=3)),
        webhook_down(ago(hours=1), recovered=ago(minutes=30)),
        Failure(
            at=ago(hours=2),
            source="reply",
            cause="Forbidden: bot was blocked by the user",
            runbook="delivery-failed",
            subject="platform:telegram",
        ),
        Failure(at=ago(hours=4), source="task", cause="ValueError: bad date", subject="task:3"),
    ),
    dead_letters=(
        DeadLetter(
            task_id=12,
            summary="Post to the crm hook: new lead",
            error="hook 'crm' answered 400",
            at=ago(hours=6),
            runbook="webhook-rejected",
            card=DEAD_CARD,
        ),
    ),
    pending_approvals=(
        PendingApproval(
            card=ACTION_CARD,
            agent="ops",
            summary="Post to the crm hook: invoice 17",
            created_at=ago(hours=3),
            expires_at=NOW + timedelta(hours=21),
        ),
    ),
    failed_deliveries=(
        FailedDelivery(
            outbox_id=40,
            platform="telegram",
            chat_id="42",
            error="Forbidden: bot was blocked",
            at=ago(hours=2),
        ),
    ),
    due=(Section("Reminders due", ("• 09:00 call the bank", "• 14:00 send the quote")),),
    activity=(AgentActivity("ops", succeeded=12, failed=2, actions=5),),
    budgets=(BudgetUse("ops", actions=5, actions_limit=200, spend=0.5, spend_limit=5.0),),
    scheduled=(
        ScheduledRun(
            "backup",
            scheduled_for=ago(hours=9),
            outcome="skipped",
            at=ago(hours=1),
            note="older than 6 h",
        ),
        ScheduledRun("digest", scheduled_for=ago(days=1), outcome="late", at=ago(hours=21)),
    ),
    chain_head="ab" * 32,
    chain_length=1234,
)


def test_title_carries_the_local_date() -> None:
    # 23:30 UTC on the 24th is already the 25th in Berlin.
    late = compose_digest(
        DigestFacts(now=datetime(2026, 11, 24, 23, 30, tzinfo=UTC), timezone=BERLIN)
    )
    assert late.title == "Daily digest, Wed 25 Nov 2026 (Europe/Berlin)"
    utc = compose_digest(DigestFacts(now=datetime(2026, 11, 24, 23, 30, tzinfo=UTC)))
    assert utc.title == "Daily digest, Tue 24 Nov 2026 (UTC)"


def test_every_section_in_its_fixed_order() -> None:
    digest = compose_digest(FULL)
    assert digest.sections == (
        "Failures (last 24 h)",
        "Dead letters (1): Retry or Discard",
        "Waiting for you (1)",
        "Deliveries that failed",
        "Reminders due",
        "Scheduled runs not on time",
        "Activity (last 24 h)",
        "Budget today",
    )
    positions = [digest.text.index(name) for name in digest.sections]
    assert positions == sorted(positions)
    assert not digest.all_clear and ALL_CLEAR not in digest.text
    assert digest.text.startswith(digest.title + "\n\n")
    assert digest.text.endswith("Event log: 1234 events, head abababababab")


def test_repeated_failures_of_one_cause_are_one_line_with_a_count() -> None:
    text = compose_digest(FULL).text
    failures = text.split("Failures (last 24 h)\n")[1].split("\n\n")[0].splitlines()
    assert failures == [
        # three webhook failures, one line; the newest recovered at 06:30 Berlin time
        "• 3x hook 'crm' answered 503 (after 4 attempts) (last 06:00), recovered at 06:30"
        " → /runbook webhook-unreachable",
        "• 1x Forbidden: bot was blocked by the user (last 05:00) → /runbook delivery-failed",
        "• 1x ValueError: bad date (last 03:00)",
    ]


def test_a_cause_is_recovered_only_when_its_newest_failure_is() -> None:
    facts = replace(
        FULL, failures=(webhook_down(ago(hours=2), ago(hours=1)), webhook_down(ago(hours=1)))
    )
    line = compose_digest(facts).text.split("Failures (last 24 h)\n")[1].splitlines()[0]
    assert "2x" in line and "recovered" not in line


def test_cards_are_references_never_invented_buttons() -> None:
    digest = compose_digest(FULL)
    assert digest.cards == (DEAD_CARD, ACTION_CARD)
    assert (
        "task 12: Post to the crm hook: new lead (hook 'crm' answered 400), card K7Q2MX"
        in digest.text
    )
    assert "→ /runbook webhook-rejected" in digest.text
    assert (
        "• P3RTAB ops: Post to the crm hook: invoice 17, waiting 3 h, expires tomorrow 04:00"
        in digest.text
    )


def test_times_render_in_the_operator_zone() -> None:
    text = compose_digest(FULL).text
    assert "• telegram 42 at 05:00: Forbidden: bot was blocked" in text  # 04:00 UTC
    assert "• backup: skipped (due yesterday 22:00): older than 6 h" in text
    assert "• digest: ran late at yesterday 10:00 (due yesterday 07:00)" in text
    summer = replace(
        FULL,
        now=datetime(2026, 7, 1, 6, 0, tzinfo=UTC),
        failures=(webhook_down(datetime(2026, 7, 1, 5, 0, tzinfo=UTC)),),
    )
    assert "(last 07:00)" in compose_digest(summer).text  # CEST, UTC+2


def test_activity_and_budget_lines() -> None:
    text = compose_digest(FULL).text
    assert "• ops: 12 done, 2 failed, 5 actions" in text
    assert "• ops: 5/200 actions, 0.50/5.00 spend" in text
    over = replace(FULL, budgets=(BudgetUse("ops", 200, 200, 0.1, 5.0),))
    assert "(over: paused) → /runbook budget-exceeded" in compose_digest(over).text


def test_all_clear_when_nothing_needs_the_operator() -> None:
    empty = compose_digest(DigestFacts(now=NOW, timezone=BERLIN))
    assert empty.all_clear
    assert empty.text == f"{empty.title}\n\n{ALL_CLEAR}"
    assert empty.cards == () and empty.sections == ()
    quiet = compose_digest(
        DigestFacts(
            now=NOW, timezone=BERLIN, activity=FULL.activity, chain_head="cd" * 32, chain_length=9
        )
    )
    assert quiet.all_clear and ALL_CLEAR in quiet.text
    assert quiet.sections == ("Activity (last 24 h)",)


def test_idle_agents_and_empty_feature_sections_are_left_out() -> None:
    facts = DigestFacts(
        now=NOW,
        activity=(AgentActivity("notes", 0, 0, 0),),
        budgets=(BudgetUse("notes", 0, 200, 0.0, 5.0),),
        due=(Section("Follow-ups due", ()),),
    )
    assert compose_digest(facts).sections == ()


def test_long_sections_are_capped_with_a_pointer() -> None:
    many = tuple(DeadLetter(task_id=i, summary=f"job {i}", error="x", at=NOW) for i in range(1, 15))
    text = compose_digest(replace(FULL, dead_letters=many)).text
    assert "• task 10: job 10" in text and "• task 11:" not in text
    assert "… and 4 more (/failed)" in text


def test_today_is_short_and_names_what_needs_a_decision() -> None:
    today = compose_today(FULL)
    assert today.title == "Needs you now (Tue 24 Nov, 07:00)"
    assert today.sections == ("Decide (2)", "Reminders due", "Still failing")
    assert today.cards == (DEAD_CARD, ACTION_CARD)
    assert "recovered" not in today.text  # the recovered webhook cause is not open
    assert "Forbidden: bot was blocked by the user" in today.text
    assert "Activity" not in today.text and "Budget" not in today.text
    assert len(today.text) < len(compose_digest(FULL).text)


def test_today_with_nothing_open() -> None:
    healed = DigestFacts(now=NOW, failures=(webhook_down(ago(hours=2), ago(hours=1)),))
    today = compose_today(healed)
    assert today.all_clear and today.text.endswith(NOTHING_NOW)


def test_age_is_short() -> None:
    assert [age(timedelta(minutes=m)) for m in (0, 45, 61, 47 * 60, 72 * 60)] == [
        "0 min",
        "45 min",
        "1 h",
        "47 h",
        "3 d",
    ]


def test_the_week_is_data_for_the_chart_not_text() -> None:
    week = tuple(DayCount(date(2026, 11, 18) + timedelta(days=i), i, 0) for i in range(7))
    assert compose_digest(replace(FULL, week=week)).text == compose_digest(FULL).text
