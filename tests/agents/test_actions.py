"""Durable actions end to end: /hook through the gate, approvals, the real webhook
connector, a loopback provider, retries, dead letters, the breaker, budgets, undo."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agents import ops
from agents.actions import Action, Propose
from agents.base import Agent, AgentResult, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.notes import RememberIntent
from agents.replies import Reply
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import ActionSettings, BreakerSettings, BudgetSettings, Settings
from config.settings import RetentionSettings
from memory.actions import ActionRepo, ActionState
from memory.approvals import ApprovalState
from memory.clock import ManualClock, from_iso
from memory.embedder import SentenceTransformerEmbedder
from memory.tasks import PRUNED, TaskState
from tests.conftest import Chat
from tests.emulators.provider import Provider


def make_settings(tmp_path: Path, provider: Provider, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "hooks": {"crm": provider.hook(), "blind": provider.hook(status=False)},
        "actions": ActionSettings(retry_base_s=0.02, retry_max_s=0.1, max_attempts=4),
        "breaker": BreakerSettings(threshold=50, cooldown_s=0.2),
    }
    values.update(overrides)
    return Settings(**values)


class Run:
    """A soloops runtime on the console, plus helpers to read cards and press them."""

    def __init__(self, chat: Chat, clock: ManualClock | None = None) -> None:
        self.chat = chat
        self.runtime = chat.runtime
        self.clock = clock

    async def say(self, text: str) -> str:
        return await self.chat.say(text)

    async def last_card(self) -> tuple[str, list[str]]:
        body = await self.runtime.store.scalar(
            "SELECT body FROM outbox WHERE body LIKE '%buttons%' ORDER BY id DESC LIMIT 1"
        )
        reply = Reply.from_json(body)
        return reply.text, [button.data for button in reply.buttons]

    async def press(self, data: str) -> str | None:
        inbound = self.chat.inbound("").model_copy(update={"callback_data": data})
        handled = await self.runtime.gateway.handle(inbound)
        await self.settle()
        return handled.notice

    async def settle(self, until: float = 60.0) -> None:
        """Let delayed retries come due, then wait for the work to settle.

        On a ManualClock the clock jumps to each due time (no real waiting); otherwise
        this polls, with ``until`` seconds as a safety net only.
        """
        deadline = asyncio.get_running_loop().time() + until
        while True:
            await self.runtime.settle()
            due = await self.runtime.store.scalar(
                "SELECT MIN(next_attempt_at) FROM tasks WHERE state = 'queued'"
            )
            delayed = await self.runtime.store.scalar(
                "SELECT COUNT(*) FROM tasks WHERE state = 'queued'"
            )
            if not delayed or asyncio.get_running_loop().time() > deadline:
                return
            if self.clock is not None and due:
                self.clock.set(max(self.clock.now(), from_iso(due)))
                self.runtime.coordinator.wake()
                continue
            await asyncio.sleep(0.02)

    async def action(self) -> Any:
        rows = await ActionRepo(self.runtime.store).in_state(*ActionState)
        return rows[-1]

    async def task_state(self) -> str:
        """The state of the newest task that proposed an action."""
        return str(
            await self.runtime.store.scalar(
                "SELECT t.state FROM tasks t JOIN actions a ON a.task_id = t.id"
                " ORDER BY a.id DESC LIMIT 1"
            )
        )


@pytest.fixture
async def run(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[Run]:
    out = io.StringIO()
    settings = make_settings(tmp_path, provider)
    # Retries and cool-downs come due when settle() moves this clock: no real waiting.
    clock = ManualClock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    async with open_runtime(
        settings, [ConsoleSender(out)], embedder=embedder, clock=clock
    ) as runtime:
        yield Run(Chat(runtime, out), clock)


async def test_hook_waits_for_approval_then_posts_once(run: Run, provider: Provider) -> None:
    out = await run.say("/hook crm new lead Jane Doe")
    assert "Approval needed (ops)\nPost to the crm hook: new lead Jane Doe" in out
    assert provider.requests == []  # nothing reaches the outside before the decision
    assert await run.task_state() == TaskState.WAITING_APPROVAL
    _, (approve, _) = await run.last_card()
    assert await run.press(approve) == "Approved."
    [key] = provider.processed
    delivery = provider.processed[key]
    assert delivery.signature_valid
    assert delivery.json() == {"text": "new lead Jane Doe", "from": "console:op"}
    assert key.startswith("console:m1#a1")
    assert (
        "Done: Post to the crm hook: new lead Jane Doe (crm answered 200)"
        in run.chat.out.getvalue()
    )
    gate = await run.runtime.events.query(kind="gate.decided")
    assert gate[0].payload["decision"] == "approve"
    assert "policy asks approval" in gate[0].payload["reason"]
    # The same message again (a platform redelivery) does nothing more.
    await run.runtime.gateway.handle(
        run.chat.inbound("/hook crm new lead Jane Doe", message_id="m1")
    )
    await run.settle()
    assert provider.deliveries(key) == 1


async def test_rejected_hook_never_leaves(run: Run, provider: Provider) -> None:
    await run.say("/hook crm do not send")
    _, (_, reject) = await run.last_card()
    await run.press(reject)
    assert provider.requests == []
    assert "Not done (rejected by console:op): Post to the crm hook" in run.chat.out.getvalue()
    assert (await run.action()).state is ActionState.REJECTED


async def test_unknown_hook_lists_the_hooks(run: Run) -> None:
    assert "There is no hook 'nope'. Hooks: blind, crm." in await run.say("/hook nope hi")
    assert "Hooks: blind, crm. Usage: /hook <name> <text>" in await run.say("/hook")


async def test_policies_auto_and_deny_from_chat(run: Run, provider: Provider) -> None:
    assert "ops.hook: approve" in await run.say("/policy")
    assert await run.say("/policy ops.hook auto") == (
        "ops.hook: auto. It runs without approval; no thresholds remain.\n"
    )
    out = await run.say("/hook crm straight through")
    assert "Done: Post to the crm hook: straight through" in out
    assert len(provider.processed) == 1
    await run.say("/policy ops.hook deny")
    denied = await run.say("/hook crm never")
    assert "Not done: policy denies ops.hook" in denied
    assert len(provider.processed) == 1
    assert "Usage: /policy" in await run.say("/policy ops.hook sometimes")
    changes = await run.runtime.events.query(kind="policy.changed")
    assert [e.payload["rule"]["mode"] for e in changes] == ["auto", "deny"]


async def test_policy_refuses_what_cannot_apply_and_says_what_remains(
    run: Run, provider: Provider
) -> None:
    """Issue 10 item 10: on main, approve-above on ops.hook let /hook run unasked."""
    said = await run.say("/policy ops.hook approve-above 500 EUR")
    assert "ops.hook has no amount, so approve-above 500 EUR would always ask" in said
    assert "Nothing was changed" in said
    assert "approve" in await run.say("/policy ops.hook")
    unknown = await run.say("/policy crm.post auto")
    assert (
        "There is no agent 'crm'" in unknown
        and "the agents: digest, drafts, followups, invoices, leads, notes, ops" in unknown
    )
    assert "declared policies: drafts.publish" in unknown and "ops.hook" in unknown
    typo = await run.say("/policy ops.hok")
    assert "ops declares no action 'hok'; its declared ones: ops.hook" in typo
    assert await run.say("/policy ops.hook auto") == (
        "ops.hook: auto. It runs without approval; no thresholds remain.\n"
    )
    first = await run.say("/policy ops.hook first-runs 2")
    assert "these still ask for approval: the first 2 runs" in first
    await run.say("/hook crm still asks")
    assert provider.requests == []  # the first runs still ask
    refused = await run.runtime.events.query(kind="task.refused")
    assert len(refused) == 2


async def test_transient_failures_retry_with_backoff_and_succeed(
    run: Run, provider: Provider
) -> None:
    await run.say("/policy ops.hook auto")
    provider.fail_next(2, status=503)
    await run.say("/hook crm flaky")
    await run.settle()
    action = await run.action()
    assert action.state is ActionState.SUCCEEDED
    assert action.attempts == 3
    assert provider.deliveries(action.idempotency_key) == 3
    assert provider.process_counts[action.idempotency_key] == 1
    retries = await run.runtime.events.query(kind="action.retry")
    assert [e.payload["attempt"] for e in retries] == [1, 2]


async def test_a_permanent_failure_dead_letters_at_once_and_retry_works(
    run: Run, provider: Provider
) -> None:
    await run.say("/policy ops.hook auto")
    provider.fail_next(1, status=422, body="bad payload")
    out = await run.say("/hook crm broken")
    assert "Action failed (ops)" in out
    assert "Reason: hook 'crm' answered 422: bad payload" in out
    assert "Hint: The receiver refused the request." in out
    assert await run.task_state() == TaskState.DEAD
    assert "1 failed task(s)" in await run.say("/failed")
    # Progressive autonomy: an auto action that failed now needs approval.
    assert "DEMOTED" in await run.say("/policy ops.hook")
    text, (retry, _) = await run.last_card()
    assert text.startswith("Action failed (ops)")
    assert await run.press(retry) == "Retry."
    action = await run.action()
    assert action.state is ActionState.SUCCEEDED
    assert provider.process_counts[action.idempotency_key] == 1  # same key, once
    assert await run.task_state() == TaskState.SUCCEEDED


async def test_discard_cancels_a_dead_letter(run: Run, provider: Provider) -> None:
    await run.say("/policy ops.hook auto")
    provider.fail_next(1, status=400)
    await run.say("/hook crm broken")
    _, (_, discard) = await run.last_card()
    assert await run.press(discard) == "Discard."
    assert await run.task_state() == TaskState.CANCELLED
    assert (await run.action()).state is ActionState.DISCARDED
    assert "No failed actions" in await run.say("/failed")


async def test_attempts_exhausted_dead_letters(run: Run, provider: Provider) -> None:
    await run.say("/policy ops.hook auto")
    provider.fail_next(10, status=500)
    await run.say("/hook crm down")
    await run.settle()
    assert await run.task_state() == TaskState.DEAD
    action = await run.action()
    assert action.attempts == 4
    assert "after 4 attempts" in (action.error or "")


async def test_breaker_opens_and_recovers(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    # Time is a ManualClock: the retries and the cool-down come due only when the test
    # advances it, so CPU load cannot change what happens.
    clock = ManualClock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    settings = make_settings(
        tmp_path,
        provider,
        breaker=BreakerSettings(threshold=2, cooldown_s=30),
        actions=ActionSettings(retry_base_s=1, retry_max_s=2, max_attempts=10),
    )
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], embedder=embedder, clock=clock
    ) as runtime:
        run = Run(Chat(runtime, out))

        async def advance(seconds: float) -> None:
            clock.advance(seconds)
            runtime.coordinator.wake()
            await runtime.settle()

        async def attempts() -> int:
            return len(await runtime.events.query(kind="action.started"))

        await run.say("/policy ops.hook auto")
        provider.fail_next(2, status=500)
        await run.say("/hook crm through the storm")
        assert await attempts() == 1
        await advance(3)  # past the first retry's backoff: the second attempt fails too
        assert await attempts() == 2
        assert "webhook:crm open" in await run.say("/status")
        [opened] = await runtime.events.query(kind="breaker.opened")
        assert opened.subject == "connector:webhook:crm"
        # While open, the next attempt waits for the cool-down instead of hammering.
        await advance(10)
        assert await attempts() == 2
        assert "webhook:crm open" in await run.say("/status")
        await advance(25)  # the cool-down is over: one probe goes through, and succeeds
        assert await attempts() == 3
        action = await run.action()
        assert action.state is ActionState.SUCCEEDED
        assert "webhook closed" in await run.say("/status")


async def test_a_crash_in_flight_is_reconciled_by_asking_the_connector(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = make_settings(tmp_path, provider)
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        run = Run(Chat(runtime, out))
        await run.say("/policy ops.hook auto")
        await run.say("/hook crm landed")
        # Simulate the crash: the action is marked in flight, as a kill mid-call leaves it.
        action = await run.action()
    async with runtime.store.__class__.open(settings.database_path) as store, store.write() as tx:
        await tx.execute("UPDATE actions SET state = 'in_flight'")
        await tx.execute("UPDATE tasks SET state = 'running', next_attempt_at = NULL")
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        await Run(Chat(runtime, out)).settle()
        fresh = await ActionRepo(runtime.store).get(action.id)
        assert fresh is not None and fresh.state is ActionState.SUCCEEDED
        [reconciled] = await runtime.events.query(kind="action.reconciled")
        assert reconciled.payload["known"] == "done"
    assert provider.process_counts[action.idempotency_key] == 1
    assert provider.deliveries(action.idempotency_key) == 1  # never sent again


async def test_a_crash_in_flight_without_lookup_asks_the_operator(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = make_settings(tmp_path, provider)
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        run = Run(Chat(runtime, out))
        await run.say("/policy ops.hook auto")
        await run.say("/hook blind sent before the crash")
        action = await run.action()
    async with runtime.store.__class__.open(settings.database_path) as store, store.write() as tx:
        await tx.execute("UPDATE actions SET state = 'in_flight', result = NULL")
        await tx.execute("UPDATE tasks SET state = 'running'")
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        run = Run(Chat(runtime, out, counter=100))
        await run.settle()
        text, (mark_done, _) = await run.last_card()
        assert text.startswith("Did this go through? (ops)")
        assert action.idempotency_key in text
        assert provider.deliveries(action.idempotency_key) == 1  # no blind resend
        assert await run.press(mark_done) == "Mark done."
        fresh = await ActionRepo(runtime.store).get(action.id)
        assert fresh is not None and fresh.state is ActionState.SUCCEEDED
        assert await run.task_state() == TaskState.SUCCEEDED
    assert provider.deliveries(action.idempotency_key) == 1


async def test_a_retry_delay_survives_a_restart(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = make_settings(
        tmp_path, provider, actions=ActionSettings(retry_base_s=0.6, retry_max_s=0.6)
    )
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        run = Run(Chat(runtime, out))
        await run.say("/policy ops.hook auto")
        provider.fail_next(1, status=503)
        await run.say("/hook crm later")
        assert await run.task_state() == TaskState.QUEUED
        due = await runtime.store.scalar("SELECT next_attempt_at FROM tasks WHERE kind = 'hook'")
        assert due is not None
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        await Run(Chat(runtime, out)).settle()
        action = await ActionRepo(runtime.store).in_state(ActionState.SUCCEEDED)
        assert len(action) == 1
        assert provider.process_counts[action[0].idempotency_key] == 1


async def test_budget_pauses_the_agent_until_extended(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = make_settings(
        tmp_path, provider, budgets={"default": BudgetSettings(actions_per_day=1)}
    )
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        run = Run(Chat(runtime, out))
        await run.say("/policy ops.hook auto")
        await run.say("/hook crm first")
        second = await run.say("/hook crm second")
        assert "Budget reached (ops)" in second
        assert "1 of 1 actions used today" in second
        assert len(provider.processed) == 1
        assert "ops: paused" in await run.say("/agents")
        _, (extend, _) = await run.last_card()
        assert await run.press(extend) == "Extend today."
        await run.settle()
        assert len(provider.processed) == 2
        assert "ops: running" in await run.say("/agents")


async def test_pause_holds_work_and_resume_releases_it(run: Run, provider: Provider) -> None:
    await run.say("/policy ops.hook auto")
    assert "ops is paused" in await run.say("/pause ops")
    await run.say("/hook crm held")
    assert provider.requests == []
    assert "Agents not running: ops (paused)" in await run.say("/status")  # control still works
    await run.say("/resume ops")
    await run.settle()
    assert len(provider.processed) == 1
    assert "There is no agent 'nobody'" in await run.say("/pause nobody")


class Mailer(Agent):
    """A test agent whose action is reversible, and one that oversteps."""

    name: ClassVar[str] = "mailer"

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        text = getattr(intent, "text", "")
        if text == "overstep":
            return Propose(Action("pay", "payments", "charge", {"amount": 1}, "Charge 1 EUR"))
        undo = Action(
            "unsend",
            "webhook",
            "post",
            {"hook": "crm", "payload": {"undo": text}},
            f"Unsend {text}",
        )
        return Propose(
            Action(
                "send",
                "webhook",
                "post",
                {"hook": "crm", "payload": {"send": text}},
                f"Send {text}",
                compensation=undo,
            )
        )


async def test_undo_runs_the_compensation_through_the_gate(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    mailer = Feature(
        name="mailer",
        build=lambda _: Mailer(),
        intents=(RememberIntent,),
        commands=(
            CommandSpec(
                "remember",
                "remember",
                "remember <text>",
                "send",
                "",
                "text",
                lambda text: {"text": text},
            ),
        ),
        capabilities=frozenset({("webhook", "post")}),
    )
    settings = make_settings(tmp_path, provider)
    out = io.StringIO()
    async with open_runtime(
        settings,
        [ConsoleSender(out)],
        features=[ops.FEATURE, mailer],
        default_features=False,
        embedder=embedder,
    ) as rt:
        run = Run(Chat(rt, out))
        assert "Nothing to undo" in await run.say("/undo")
        await run.say("/policy mailer.send auto")
        await run.say("/remember hello")
        assert [d.json() for d in provider.processed.values()] == [{"send": "hello"}]
        out_text = await run.say("/undo")
        assert "Approval needed (ops)\nUnsend hello" in out_text  # ops.unsend: default approve
        _, (approve, _) = await run.last_card()
        await run.press(approve)
        assert [d.json() for d in provider.processed.values()] == [
            {"send": "hello"},
            {"undo": "hello"},
        ]
        assert "Nothing to undo" in await run.say("/undo")
        # The auto action was undone: it needs approval from now on.
        assert "DEMOTED" in await run.say("/policy mailer.send")
        refused = await run.say("/remember overstep")
        assert "mailer may not use payments.charge; refused" in refused
        assert len(await rt.events.query(kind="action.refused")) == 1


async def test_irreversible_actions_say_so(run: Run, provider: Provider) -> None:
    await run.say("/policy ops.hook auto")
    await run.say("/hook crm sent")
    assert "is irreversible" in await run.say("/undo")


async def test_an_agent_that_keeps_failing_is_degraded(run: Run, provider: Provider) -> None:
    await run.say("/policy ops.hook auto")
    provider.fail_next(3, status=400)
    for n in range(3):
        await run.say("/policy ops.hook auto")  # each failure demotes it: promote again
        await run.say(f"/hook crm broken {n}")
    assert run.runtime.coordinator.lifecycle.state("ops").value == "degraded"
    assert "ops agent failed several times in a row and is now degraded" in run.chat.out.getvalue()
    await run.say("/policy ops.hook auto")  # control commands still run
    await run.say("/hook crm held while degraded")
    assert len(provider.processed) == 0
    await run.say("/resume ops")
    await run.settle()
    assert len(provider.processed) == 1


async def test_editing_an_approved_action_voids_the_approval(run: Run, provider: Provider) -> None:
    await run.say("/hook crm pay Bob 100")
    _, (approve, _) = await run.last_card()
    # Someone edits the stored action between the card and the press.
    async with run.runtime.store.write() as tx:
        params = json.dumps({"hook": "crm", "payload": {"text": "pay Bob 900"}})
        await tx.execute("UPDATE actions SET params = ?", (params,))
    await run.press(approve)
    assert provider.requests == []
    states = [
        r[0] for r in await run.runtime.store.fetchall("SELECT state FROM approvals ORDER BY id")
    ]
    assert states == [ApprovalState.VOIDED, ApprovalState.PENDING]
    assert "Voided (the action changed)" in run.chat.out.getvalue()


async def test_two_presses_on_an_action_card_send_once(run: Run, provider: Provider) -> None:
    await run.say("/hook crm once only")
    _, (approve, reject) = await run.last_card()
    presses = [
        run.runtime.gateway.handle(run.chat.inbound("").model_copy(update={"callback_data": d}))
        for d in (approve, approve, reject, approve)
    ]
    await asyncio.gather(*presses)
    await run.settle()
    assert len(provider.requests) <= 1
    assert len(await run.runtime.events.query(kind="approval.decided")) == 1


async def test_retry_of_an_old_dead_letter_after_retention(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    """Retention clears the intent of tasks that ended well; a dead one keeps its own, so
    its Retry still runs it, days later."""
    out = io.StringIO()
    settings = make_settings(
        tmp_path,
        provider,
        retention=RetentionSettings(days=2),
    )
    clock = ManualClock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    async with open_runtime(
        settings, [ConsoleSender(out)], embedder=embedder, clock=clock
    ) as runtime:
        run = Run(Chat(runtime, out), clock)
        await run.say("/policy ops.hook auto")
        provider.fail_next(1, status=422, body="bad payload")
        await run.say("/hook crm broken")
        assert await run.task_state() == TaskState.DEAD
        _, (retry, _) = await run.last_card()  # the card's text goes with retention
        clock.advance(days=4)  # the dead-letter card lasts 7 days
        assert runtime.retention is not None
        pruned = await runtime.retention.run_once()
        assert pruned.tasks >= 1  # the /policy task, which succeeded
        # The /policy task succeeded four days ago: its intent is gone, the row stays.
        policy = await runtime.store.fetchone(
            "SELECT state, intent FROM tasks WHERE kind = 'policy'"
        )
        assert policy is not None and tuple(policy) == ("succeeded", PRUNED)
        hook_intent = await runtime.store.scalar("SELECT intent FROM tasks WHERE kind = 'hook'")
        assert json.loads(hook_intent)["kind"] == "hook"
        assert await run.press(retry) == "Retry."
        action = await run.action()
        assert action.state is ActionState.SUCCEEDED
        assert provider.process_counts[action.idempotency_key] == 1
        assert await run.task_state() == TaskState.SUCCEEDED
