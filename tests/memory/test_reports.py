"""The digest's facts gathered from a real SQLite file, written through the repositories."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config import BudgetSettings
from memory.actions import ActionRepo, ActionState
from memory.approvals import ApprovalRepo
from memory.control import SpendRepo
from memory.digest_facts import CardRef
from memory.errors import SnapshotError
from memory.events import EventLog, hash_hex
from memory.outbox import OutboxRepo
from memory.reports import (
    gather_digest_facts,
    gather_store_metrics,
    read_digest_facts,
)
from memory.snapshot import read_snapshot
from memory.store import Store
from memory.tasks import TaskRepo, TaskState

START = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 06:00 in Berlin


class ManualClock:
    def __init__(self) -> None:
        self.moment = START

    def now(self) -> datetime:
        return self.moment


@dataclass
class Home:
    """A database written the way the coordinator writes it, with a clock the test moves."""

    store: Store
    events: EventLog
    clock: ManualClock

    @property
    def path(self) -> Path:
        return self.store.path

    def at(self, **delta: float) -> datetime:
        self.clock.moment = START + timedelta(**delta)
        return self.clock.moment

    async def task(self, agent: str, kind: str, state: TaskState, **event: Any) -> int:
        """A task and the event of its final move, as the coordinator records them."""
        now = self.clock.now()
        tasks = TaskRepo(self.store)
        async with self.store.write() as tx:
            row, _ = await tasks.create(
                tx,
                idempotency_key=f"k{now.timestamp()}{kind}{agent}{state}",
                kind=kind,
                agent=agent,
                lane="l",
                intent="{}",
                now=now,
            )
            await tasks.update(tx, row.id, state=state, now=now, error=event.get("error"))
            name = {"succeeded": "task.succeeded", "failed": "task.failed"}
            if state.value in name:
                await self.events.append(
                    tx,
                    name[state.value],
                    actor="coordinator",
                    subject=f"task:{row.id}",
                    payload={"kind": kind, **event},
                )
        return row.id

    async def action(self, task_id: int, agent: str, state: ActionState, attempts: int = 1) -> int:
        now = self.clock.now()
        actions = ActionRepo(self.store)
        async with self.store.write() as tx:
            row = await actions.create(
                tx,
                task_id=task_id,
                agent=agent,
                name="hook",
                connector="webhook",
                operation="post",
                params={},
                summary=f"Post to the crm hook ({task_id})",
                risk={},
                compensation=None,
                idempotency_key=f"a{task_id}",
                fingerprint="f",
                gate="auto",
                state=state,
                now=now,
            )
            for _ in range(attempts):
                await actions.update(tx, row.id, state=state, now=now, attempt=True)
        return row.id

    async def event(self, event_kind: str, subject: str, **payload: Any) -> None:
        await self.events.record(event_kind, actor="test", subject=subject, payload=payload)

    async def dead(self, agent: str, error: str, failure: str) -> tuple[int, int]:
        """A task whose action gave up, with the ``task.dead`` event the executor writes."""
        task = await self.task(agent, "hook", TaskState.DEAD, error=error)
        action = await self.action(task, agent, ActionState.FAILED)
        await self.event("task.dead", f"task:{task}", action=action, error=error, kind=failure)
        return task, action


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    clock = ManualClock()
    async with Store.open(tmp_path / "soloops.db") as store:
        yield Home(store, EventLog(store, clock=clock), clock)


def facts_at(conn_path: Path, now: datetime, **kwargs: Any) -> Any:
    with read_snapshot(conn_path) as conn:
        return read_digest_facts(conn, now=now, **kwargs)


async def test_an_empty_home_has_no_facts(home: Home) -> None:
    facts = await gather_digest_facts(home.path, now=START, timezone="Europe/Berlin")
    assert (facts.failures, facts.dead_letters, facts.pending_approvals) == ((), (), ())
    assert (facts.failed_deliveries, facts.activity, facts.budgets, facts.scheduled) == (
        (),
        (),
        (),
        (),
    )
    assert facts.chain_head is None and facts.chain_length == 0
    assert [d.day for d in facts.week] == [date(2026, 11, 18) + timedelta(days=i) for i in range(7)]
    assert all(d.succeeded == d.failed == 0 for d in facts.week)


async def test_failures_carry_cause_runbook_and_recovery(home: Home) -> None:
    home.at(hours=-30)  # outside the 24 h window: not reported
    await home.task("notes", "remember", TaskState.FAILED, error="too old", error_type="X")
    home.at(hours=1)
    await home.dead("ops", "hook 'crm' answered 503 (after 4 attempts)", "exhausted")
    home.at(hours=2)
    await home.event("breaker.opened", "connector:webhook", failures=5, after="answered 503")
    home.at(hours=3)
    await home.event("action.succeeded", "action:99", connector="webhook", summary="ok")
    home.at(hours=4)
    await home.task(
        "notes",
        "recall",
        TaskState.FAILED,
        error="database is locked",
        error_type="OperationalError",
    )
    home.at(hours=5)
    await home.event(
        "reply.failed", "outbox:7", platform="telegram", error="Forbidden: bot was blocked"
    )
    now = home.at(hours=6)

    facts = facts_at(home.path, now, timezone="Europe/Berlin")
    by_subject = {(f.source, f.cause): f for f in facts.failures}
    # the hand-written task.dead row has no action; the written one names webhook
    dead = [
        f for f in facts.failures if f.source == "action" and f.runbook == "webhook-unreachable"
    ]
    assert dead and all(f.recovered_at == START + timedelta(hours=3) for f in dead)
    breaker = by_subject[("breaker", "webhook breaker opened after 5 failures")]
    assert breaker.runbook == "breaker-open"
    assert breaker.recovered_at == START + timedelta(hours=3)
    locked = by_subject[("task", "database is locked")]
    assert locked.runbook == "database-locked" and locked.recovered_at is None
    reply = by_subject[("reply", "Forbidden: bot was blocked")]
    assert reply.runbook == "delivery-failed" and reply.recovered_at is None
    assert "too old" not in {f.cause for f in facts.failures}

    # a later success of the same kind of task, and a reply sent to the same platform
    home.at(hours=7)
    await home.task("notes", "recall", TaskState.SUCCEEDED)
    await home.event("reply.sent", "outbox:8", platform="telegram", chat="42")
    later = facts_at(home.path, home.at(hours=8))
    recovered = {f.cause: f.recovered_at for f in later.failures}
    assert recovered["database is locked"] == START + timedelta(hours=7)
    assert recovered["Forbidden: bot was blocked"] == START + timedelta(hours=7)


async def test_dead_letters_and_pending_cards(home: Home) -> None:
    home.at(hours=1)
    dead, action = await home.dead("ops", "hook 'crm' answered 400: no", "permanent")
    waiting = await home.task("ops", "hook", TaskState.WAITING_APPROVAL)
    approvals = ApprovalRepo(home.store)
    now = home.clock.now()
    async with home.store.write() as tx:
        card = await approvals.create(
            tx,
            code="K7Q2MX",
            task_id=dead,
            agent="ops",
            summary="Post to the crm hook: x\nReason: hook 'crm' answered 400: no\nHint: ...",
            action=json.dumps({"dead_letter": action}),
            fingerprint="f",
            conversation="{}",
            now=now,
            expires_at=now + timedelta(days=7),
            purpose="dead_letter",
        )
        ask = await approvals.create(
            tx,
            code="P3RTAB",
            task_id=waiting,
            agent="ops",
            summary="Post to the crm hook: y",
            action="{}",
            fingerprint="g",
            conversation="{}",
            now=now,
            expires_at=now + timedelta(hours=24),
        )
    facts = facts_at(home.path, home.at(hours=2))
    [letter] = facts.dead_letters
    assert letter.task_id == dead
    assert letter.summary == "Post to the crm hook: x"
    assert letter.runbook == "webhook-rejected"
    assert letter.card == CardRef(card.id, "K7Q2MX", "dead_letter")
    [pending] = facts.pending_approvals
    assert pending.card == CardRef(ask.id, "P3RTAB", "action")
    assert pending.expires_at == now + timedelta(hours=24)


async def test_deliveries_activity_budgets_schedule_week_and_chain(home: Home) -> None:
    outbox = OutboxRepo(home.store)
    spend = SpendRepo(home.store)
    home.at(hours=-50)  # three days ago in Berlin: counted in the week only
    await home.task("ops", "hook", TaskState.SUCCEEDED)
    home.at(hours=1)
    for _ in range(3):
        await home.task("ops", "help", TaskState.SUCCEEDED)
    failed = await home.task(
        "ops", "hook", TaskState.FAILED, error="boom", error_type="RuntimeError"
    )
    await home.action(failed, "ops", ActionState.SUCCEEDED)
    async with home.store.write() as tx:
        sent = await outbox.enqueue(
            tx,
            platform="telegram",
            chat_id="42",
            thread_id=None,
            reply_to=None,
            body="{}",
            now=home.clock.now(),
        )
        await outbox.mark_failed(tx, sent, "Forbidden: bot was blocked")
        await spend.record(
            tx, agent="ops", model="m", tokens_in=1, tokens_out=1, cost=0.25, now=home.clock.now()
        )
    await home.event(
        "job.skipped",
        "job:backup",
        count=1,
        first="2026-11-24T04:00:00+00:00",
        last="2026-11-24T04:00:00+00:00",
        reasons=["older than 30m"],
    )
    await home.event(
        "job.late",
        "job:digest",
        scheduled_at="2026-11-24T05:30:00+00:00",
        missed_since="2026-11-24T05:30:00+00:00",
        coalesced=0,
    )
    now = home.at(hours=2)
    facts = facts_at(
        home.path,
        now,
        timezone="Europe/Berlin",
        budget_for=lambda agent: BudgetSettings(actions_per_day=10, spend_per_day=1.0),
    )

    [delivery] = facts.failed_deliveries
    assert (delivery.platform, delivery.chat_id, delivery.error) == (
        "telegram",
        "42",
        "Forbidden: bot was blocked",
    )
    [ops] = facts.activity
    assert (ops.agent, ops.succeeded, ops.failed, ops.actions) == ("ops", 3, 1, 1)
    [budget] = facts.budgets
    assert (budget.actions, budget.actions_limit, budget.spend, budget.spend_limit) == (
        1,
        10,
        0.25,
        1.0,
    )
    skipped, late = facts.scheduled
    assert (skipped.job, skipped.outcome) == ("backup", "skipped")
    assert skipped.note == "1 skipped (older than 30m)"
    assert skipped.scheduled_for == datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    assert (late.job, late.outcome) == ("digest", "late")
    week = {d.day: (d.succeeded, d.failed) for d in facts.week}
    assert week[date(2026, 11, 24)] == (3, 1)
    assert week[date(2026, 11, 22)] == (1, 0)  # 03:00 Berlin on the 22nd
    assert sum(s + f for s, f in week.values()) == 5
    seq, head = await home.store.fetchone("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
    assert (facts.chain_length, facts.chain_head) == (seq, hash_hex(head))


async def test_the_snapshot_does_not_see_later_commits(home: Home) -> None:
    home.at(hours=1)
    await home.task("ops", "help", TaskState.SUCCEEDED)
    with read_snapshot(home.path) as conn:
        before = read_digest_facts(conn, now=home.at(hours=2))
        await home.task("ops", "help", TaskState.SUCCEEDED)  # commits while the read is open
        again = read_digest_facts(conn, now=home.at(hours=2))
    assert before.activity == again.activity and before.chain_head == again.chain_head
    after = facts_at(home.path, home.at(hours=2))
    assert after.activity[0].succeeded == 2


async def test_store_metrics(home: Home) -> None:
    home.at(hours=1)
    await home.task("ops", "help", TaskState.SUCCEEDED)
    await home.dead("ops", "x", "permanent")
    await home.event("action.started", "action:1", connector="webhook")
    home.at(hours=1, seconds=2.5)
    await home.event("action.succeeded", "action:1", connector="webhook")
    async with home.store.write() as tx:
        await OutboxRepo(home.store).enqueue(
            tx,
            platform="console",
            chat_id="c",
            thread_id=None,
            reply_to=None,
            body="{}",
            now=home.clock.now(),
        )
    metrics = await gather_store_metrics(home.path, home.at(hours=2))
    assert metrics.tasks == {"succeeded": 1, "dead": 1}
    assert metrics.outbox_depth == 1
    assert metrics.action_latencies == (2.5,)


async def test_a_missing_database_is_named(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no soloops database"):
        await gather_digest_facts(tmp_path / "nope.db", now=START)
