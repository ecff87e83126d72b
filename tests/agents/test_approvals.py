"""Approvals through the real gateway and coordinator on real SQLite files."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from agents.approvals import BUTTON_PREFIX, card_text, new_button_data, new_code
from agents.base import Agent, AgentResult, NeedsApproval, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.notes import RememberIntent
from agents.replies import CALLBACK_DATA_MAX, Reply
from bot.console import ConsoleSender
from bot.gateway import Outcome as GatewayOutcome
from bot.runtime import open_runtime
from config import Settings
from memory.approvals import ApprovalRepo, ApprovalState
from memory.store import Store
from memory.tasks import TaskState
from tests.conftest import Chat


async def _card(chat: Chat) -> tuple[str, list[str]]:
    """The code and button data of the newest approval card."""
    body = await chat.runtime.store.scalar(
        "SELECT body FROM outbox WHERE body LIKE '%buttons%' ORDER BY id DESC LIMIT 1"
    )
    reply = Reply.from_json(body)
    code = reply.text.rsplit("/reject ", 1)[1].strip()
    return code, [button.data for button in reply.buttons]


async def _press(chat: Chat, data: str, user: str = "op") -> str | None:
    inbound = chat.inbound("").model_copy(update={"callback_data": data, "user_id": user})
    handled = await chat.runtime.gateway.handle(inbound)
    await chat.runtime.settle()
    return handled.notice


def test_tokens_fit_telegram_and_codes_are_typeable() -> None:
    data = new_button_data()
    assert data.startswith(BUTTON_PREFIX)
    assert len(data.encode()) <= CALLBACK_DATA_MAX
    assert len({new_button_data() for _ in range(1000)}) == 1000
    code = new_code()
    assert len(code) == 6
    assert not set(code) & set("01OIL")


async def test_confirm_card_then_press_applies_once_and_edits_the_card(chat: Chat) -> None:
    out = await chat.say("/confirm ship the newsletter")
    assert "Approval needed (ops)\nConfirm: ship the newsletter" in out
    code, (approve, reject) = await _card(chat)
    assert f"/approve {code}" in out
    task_state = await chat.runtime.store.scalar("SELECT state FROM tasks")
    assert task_state == TaskState.WAITING_APPROVAL

    start = len(chat.out.getvalue())
    assert await _press(chat, approve) == "Approved."
    after = chat.out.getvalue()[start:]
    assert "[card updated] Approved by console:op" in after
    assert "Confirmed by console:op: ship the newsletter" in after
    assert await chat.runtime.store.scalar("SELECT state FROM tasks") == TaskState.SUCCEEDED

    # A second press, of either button, changes nothing.
    assert (await _press(chat, reject)).startswith("Already approved by console:op")  # type: ignore[union-attr]
    assert (await _press(chat, approve)).startswith("Already approved")  # type: ignore[union-attr]
    assert [e.kind for e in await chat.runtime.events.query(kind="confirm")] == ["confirm.approved"]


async def test_reject_by_text_code(chat: Chat) -> None:
    await chat.say("/confirm delete the old site")
    code, _ = await _card(chat)
    out = await chat.say(f"/reject {code.lower()}")
    assert "Not confirmed (rejected by console:op): delete the old site" in out
    assert f"{code}: Rejected." in out
    assert "[card updated] Rejected by console:op" in out


async def test_forged_and_unknown_buttons_do_nothing(chat: Chat) -> None:
    await chat.say("/confirm x")
    _, (approve, _) = await _card(chat)
    forged = approve[:-2] + ("AA" if not approve.endswith("AA") else "BB")
    for data in (forged, "b:", "approve", "x" * 64):
        assert await _press(chat, data) == "This button is not valid any more."
    assert await chat.runtime.store.scalar("SELECT state FROM approvals") == ApprovalState.PENDING
    assert len(await chat.runtime.events.query(kind="approval.unknown_button")) == 4


async def test_a_stranger_cannot_press(chat: Chat) -> None:
    await chat.say("/confirm x")
    _, (approve, _) = await _card(chat)
    inbound = chat.inbound("").model_copy(
        update={"callback_data": approve, "platform": "telegram", "user_id": "666"}
    )
    handled = await chat.runtime.gateway.handle(inbound)
    assert handled.outcome is GatewayOutcome.REFUSED
    assert handled.notice == "Not allowed."
    assert await chat.runtime.store.scalar("SELECT state FROM approvals") == ApprovalState.PENDING


async def test_two_presses_at_once_apply_once(chat: Chat) -> None:
    await chat.say("/confirm race")
    _, (approve, reject) = await _card(chat)
    presses = [
        chat.runtime.gateway.handle(chat.inbound("").model_copy(update={"callback_data": data}))
        for data in (approve, reject, approve, reject)
    ]
    results = await asyncio.gather(*presses)
    await chat.runtime.settle()
    notices = [r.notice for r in results]
    assert sum(n in ("Approved.", "Rejected.") for n in notices) == 1
    assert len(await chat.runtime.events.query(kind="approval.decided")) == 1
    assert len(await chat.runtime.events.query(kind="confirm")) == 1


class ClockAt:
    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment


async def test_an_expired_approval_cannot_be_applied(settings: Settings) -> None:
    clock = ClockAt()
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], clock=clock) as runtime:
        chat = Chat(runtime, out)
        await chat.say("/confirm too late")
        _, (approve, _) = await _card(chat)
        clock.moment += timedelta(hours=25)
        assert await _press(chat, approve) == "This approval expired; it counts as rejected."
        assert "Not confirmed (the approval expired): too late" in out.getvalue()
        assert "[card updated] Expired (counts as rejected)" in out.getvalue()
        assert await runtime.store.scalar("SELECT state FROM approvals") == ApprovalState.EXPIRED


async def test_expiry_job_rejects_and_tells_the_operator(settings: Settings) -> None:
    clock = ClockAt()
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], clock=clock) as runtime:
        chat = Chat(runtime, out)
        await chat.say("/confirm forgotten")
        clock.moment += timedelta(days=2)
        assert await runtime.coordinator.approvals.expire_due() == 1
        runtime.coordinator.wake()
        await runtime.settle()
        assert "Not confirmed (the approval expired): forgotten" in out.getvalue()
        assert await runtime.coordinator.approvals.expire_due() == 0


async def test_buttons_still_work_after_a_restart(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)]) as runtime:
        chat = Chat(runtime, out)
        await chat.say("/confirm survive restarts")
        _, (approve, _) = await _card(chat)
    async with open_runtime(settings, [ConsoleSender(out)]) as runtime:
        chat = Chat(runtime, out, counter=100)
        assert await _press(chat, approve) == "Approved."
        assert "Confirmed by console:op: survive restarts" in out.getvalue()
        assert "1 approval(s)" not in await chat.say("/pending")


class Payer(Agent):
    """Asks approval to pay; the amount can change between the ask and the resume."""

    name: ClassVar[str] = "payer"
    amount: ClassVar[int] = 100

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        action = {"pay": "Bob", "amount": Payer.amount}
        if ctx.decision is None or not ctx.decision.covers(self.name, action):
            return NeedsApproval(summary=f"Pay Bob {Payer.amount} EUR", action=action)
        return [Reply(text=f"paid {Payer.amount} after {ctx.decision.outcome}")]


async def test_a_changed_action_voids_its_approval(settings: Settings) -> None:
    payer = Feature(
        name="payer",
        build=lambda _: Payer(),
        intents=(RememberIntent,),
        commands=(
            CommandSpec(
                "remember", "remember", "remember <text>", "pay", "", "text", lambda t: {"text": t}
            ),
        ),
    )

    out = io.StringIO()
    Payer.amount = 100
    async with open_runtime(
        settings, [ConsoleSender(out)], features=[payer], default_features=False
    ) as runtime:
        chat = Chat(runtime, out)
        await chat.say("/remember pay")
        _, (approve, _) = await _card(chat)
        Payer.amount = 900  # the action changes before the decision is used
        assert await _press(chat, approve) == "Approved."
        text = out.getvalue()
        assert "paid" not in text
        assert "[card updated] Voided (the action changed)" in text
        assert "Pay Bob 900 EUR" in text  # a new card for the new action
        states = [
            r[0] for r in await runtime.store.fetchall("SELECT state FROM approvals ORDER BY id")
        ]
        assert states == [ApprovalState.VOIDED, ApprovalState.PENDING]
        _, (approve_new, _) = await _card(chat)
        await _press(chat, approve_new)
        assert "paid 900 after approved" in out.getvalue()


async def test_repo_decision_is_conditional(store: Store) -> None:
    repo = ApprovalRepo(store)
    now = datetime.now(UTC)
    async with store.write() as tx:
        await tx.execute(
            "INSERT INTO tasks (idempotency_key, kind, agent, lane, state, intent, created_at,"
            " updated_at) VALUES ('k', 'confirm', 'ops', 'l', 'waiting_approval', '{}', 'n', 'n')"
        )
        row = await repo.create(
            tx,
            code="ABCDEF",
            task_id=1,
            agent="ops",
            summary="s",
            action="{}",
            fingerprint="f",
            conversation="{}",
            now=now,
            expires_at=now + timedelta(hours=1),
        )
        assert await repo.decide(tx, row.id, state=ApprovalState.APPROVED, by="a", now=now)
        assert not await repo.decide(tx, row.id, state=ApprovalState.REJECTED, by="b", now=now)
    assert card_text(row).endswith("Approve: /approve ABCDEF · Reject: /reject ABCDEF")
