"""Approvals: the operator's yes or no on one exact action, decided once.

An agent returns :class:`~agents.base.NeedsApproval`; the coordinator parks the task
(``waiting_approval``) and asks the desk for a card. The card carries two buttons
whose callback data are opaque, unguessable tokens (``b:<22 url-safe chars>``, well
inside Telegram's 64 bytes), and a short code for ``/approve CODE`` / ``/reject CODE``
where buttons are missing or fail.

A decision is one transaction: a conditional UPDATE of the approval (pending and
unexpired, so two presses at once apply once), the waiting task back in the queue with
the decision, an event, and an edit of the card queued in the outbox.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from agents.base import Decision, NeedsApproval, fingerprint
from agents.intents import Conversation
from agents.replies import Button, Reply
from agents.states import check_transition
from memory.approvals import ApprovalRepo, ApprovalRow, ApprovalState
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskState

BUTTON_PREFIX = "b:"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U
CODE_LENGTH = 6
DEFAULT_TTL = timedelta(hours=24)


class Verdict(StrEnum):
    """What became of one attempt to decide."""

    APPLIED = "applied"
    ALREADY = "already_decided"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """The answer to show whoever pressed or typed (a callback answer, a reply)."""

    verdict: Verdict
    message: str
    approval_id: int | None = None


def new_code() -> str:
    """A short code people can type: 6 characters, about 29 bits."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def new_button_data() -> str:
    """Opaque callback data for one button (128 random bits)."""
    return BUTTON_PREFIX + secrets.token_urlsafe(16)


def card_text(row: ApprovalRow, tz_label: str = "UTC") -> str:
    """The text of a pending approval card."""
    return (
        f"Approval needed ({row.agent})\n{row.summary}\n"
        f"Expires {row.expires_at:%Y-%m-%d %H:%M} {tz_label}. "
        f"Reply /approve {row.code} or /reject {row.code}"
    )


def decided_text(row: ApprovalRow, state: ApprovalState, by: str, at: datetime) -> str:
    """The text a card is edited to once it is decided (no buttons)."""
    verb = {
        ApprovalState.APPROVED: "Approved",
        ApprovalState.REJECTED: "Rejected",
        ApprovalState.EXPIRED: "Expired (counts as rejected)",
        ApprovalState.VOIDED: "Voided (the action changed)",
    }[state]
    who = "" if state in (ApprovalState.EXPIRED, ApprovalState.VOIDED) else f" by {by}"
    return f"{verb}{who} at {at:%Y-%m-%d %H:%M} UTC\n{row.summary}"


def decision_of(row: ApprovalRow) -> Decision | None:
    """The decision an approval row holds, if it has one."""
    if row.state is ApprovalState.PENDING:
        return None
    return Decision(
        approval_id=row.id,
        outcome=row.state.value,  # type: ignore[arg-type]  # the non-pending states
        by=row.decided_by or "",
        fingerprint=row.fingerprint,
    )


class ApprovalDesk:
    """Creates approval cards and applies decisions on them."""

    def __init__(self, store: Store, events: EventLog, clock: Clock | None = None) -> None:
        self._store = store
        self._events = events
        self._clock = clock or SystemClock()
        self._repo = ApprovalRepo(store)
        self._tasks = TaskRepo(store)
        self._outbox = OutboxRepo(store)

    @property
    def repo(self) -> ApprovalRepo:
        return self._repo

    async def request(
        self,
        tx: Transaction,
        *,
        task_id: int,
        agent: str,
        need: NeedsApproval,
        conversation: Conversation,
    ) -> ApprovalRow:
        """Store an approval and queue its card in ``conversation``."""
        now = self._clock.now()
        row = await self._repo.create(
            tx,
            code=await self._unique_code(tx),
            task_id=task_id,
            agent=agent,
            summary=need.summary,
            action=json.dumps(need.action, sort_keys=True, default=str),
            fingerprint=fingerprint(agent, need.action),
            conversation=conversation.model_dump_json(),
            now=now,
            expires_at=now + (need.ttl or DEFAULT_TTL),
        )
        buttons = []
        for label, decision, style in (
            ("Approve", "approve", "primary"),
            ("Reject", "reject", "danger"),
        ):
            data = new_button_data()
            await self._repo.add_button(
                tx, token=data, approval_id=row.id, decision=decision, now=now
            )
            buttons.append(Button(label=label, data=data, style=style))
        outbox_id = await self._queue(
            tx, conversation, Reply(text=card_text(row), buttons=tuple(buttons))
        )
        await self._repo.set_card(tx, row.id, outbox_id)
        await self._events.append(
            tx,
            "approval.requested",
            actor=agent,
            subject=f"approval:{row.id}",
            payload={
                "task": task_id,
                "code": row.code,
                "summary": need.summary[:200],
                "fingerprint": row.fingerprint[:16],
                "expires_at": row.expires_at.isoformat(),
            },
        )
        return row

    async def resend(self, tx: Transaction, row: ApprovalRow, conversation: Conversation) -> None:
        """Show a pending card again (``/pending``); the new copy becomes the card."""
        rows = await tx.fetchall(
            "SELECT token, decision FROM buttons WHERE approval_id = ? ORDER BY rowid", (row.id,)
        )
        buttons = tuple(
            Button(
                label=r["decision"].title(),
                data=r["token"],
                style="primary" if r["decision"] == "approve" else "danger",
            )
            for r in rows
        )
        outbox_id = await self._queue(tx, conversation, Reply(text=card_text(row), buttons=buttons))
        await self._repo.set_card(tx, row.id, outbox_id)

    async def decide_by_button(self, data: str, actor: str) -> DecisionResult:
        """Apply the decision a button press carries."""
        async with self._store.write() as tx:
            found = await self._repo.button(tx, data) if data.startswith(BUTTON_PREFIX) else None
            if found is None:
                await self._events.append(
                    tx,
                    "approval.unknown_button",
                    actor=actor,
                    subject="button",
                    payload={"data_chars": len(data)},
                )
                return DecisionResult(Verdict.UNKNOWN, "This button is not valid any more.")
            row, decision = found
            return await self._decide(tx, row, decision, actor)

    async def decide_by_code(self, code: str, decision: str, actor: str) -> DecisionResult:
        """Apply ``/approve CODE`` or ``/reject CODE``."""
        async with self._store.write() as tx:
            row = await self._repo.by_code(tx, code.strip().upper())
            if row is None:
                await self._events.append(
                    tx,
                    "approval.unknown_code",
                    actor=actor,
                    subject="approval",
                    payload={"code": code[:16]},
                )
                return DecisionResult(
                    Verdict.UNKNOWN, f"No approval has the code {code!r}. /pending lists them."
                )
            return await self._decide(tx, row, decision, actor)

    async def expire_due(self) -> int:
        """Expire every pending approval whose time is up; return how many."""
        overdue = await self._repo.overdue(self._clock.now())
        for row in overdue:
            async with self._store.write() as tx:
                await self._expire(tx, row)
        return len(overdue)

    async def next_expiry(self) -> datetime | None:
        """When the next pending approval expires."""
        return await self._repo.next_expiry()

    async def void(self, tx: Transaction, row: ApprovalRow, reason: str) -> None:
        """Void an approval whose action changed; edit its card."""
        now = self._clock.now()
        await self._repo.void(tx, row.id, now)
        await self._events.append(
            tx,
            "approval.voided",
            actor="coordinator",
            subject=f"approval:{row.id}",
            payload={"reason": reason},
        )
        await self._edit_card(tx, row, ApprovalState.VOIDED, "system", now)

    async def _decide(
        self, tx: Transaction, row: ApprovalRow, decision: str, actor: str
    ) -> DecisionResult:
        now = self._clock.now()
        if row.state is not ApprovalState.PENDING:
            when = f" at {row.decided_at:%H:%M} UTC" if row.decided_at else ""
            who = f" by {row.decided_by}" if row.decided_by and row.decided_by != "expiry" else ""
            await self._events.append(
                tx,
                "approval.repeat",
                actor=actor,
                subject=f"approval:{row.id}",
                payload={"state": row.state.value, "attempted": decision},
            )
            return DecisionResult(Verdict.ALREADY, f"Already {row.state.value}{who}{when}.", row.id)
        if row.expires_at <= now:
            await self._expire(tx, row)
            return DecisionResult(
                Verdict.EXPIRED, "This approval expired; it counts as rejected.", row.id
            )
        state = ApprovalState.APPROVED if decision == "approve" else ApprovalState.REJECTED
        if not await self._repo.decide(tx, row.id, state=state, by=actor, now=now):
            return DecisionResult(Verdict.ALREADY, "Already decided.", row.id)
        await self._events.append(
            tx,
            "approval.decided",
            actor=actor,
            subject=f"approval:{row.id}",
            payload={"decision": state.value, "task": row.task_id, "code": row.code},
        )
        await self._resume(tx, row)
        await self._edit_card(tx, row, state, actor, now)
        return DecisionResult(Verdict.APPLIED, f"{state.value.title()}.", row.id)

    async def _expire(self, tx: Transaction, row: ApprovalRow) -> None:
        now = self._clock.now()
        if not await self._repo.expire(tx, row.id, now):
            return
        await self._events.append(
            tx,
            "approval.expired",
            actor="coordinator",
            subject=f"approval:{row.id}",
            payload={"task": row.task_id, "code": row.code},
        )
        await self._resume(tx, row)
        await self._edit_card(tx, row, ApprovalState.EXPIRED, "expiry", now)

    async def _resume(self, tx: Transaction, row: ApprovalRow) -> None:
        check_transition(TaskState.WAITING_APPROVAL, TaskState.QUEUED)
        moved = await self._tasks.update(
            tx,
            row.task_id,
            state=TaskState.QUEUED,
            now=self._clock.now(),
            expect=TaskState.WAITING_APPROVAL,
        )
        if moved:
            await self._events.append(
                tx,
                "task.resumed",
                actor="coordinator",
                subject=f"task:{row.task_id}",
                payload={"approval": row.id},
            )

    async def _edit_card(
        self, tx: Transaction, row: ApprovalRow, state: ApprovalState, by: str, at: datetime
    ) -> None:
        conversation = Conversation.model_validate_json(row.conversation)
        await self._queue(
            tx,
            conversation,
            Reply(text=decided_text(row, state, by, at)),
            replaces=row.card_outbox_id,
        )

    async def _queue(
        self, tx: Transaction, conversation: Conversation, reply: Reply, replaces: int | None = None
    ) -> int:
        return await self._outbox.enqueue(
            tx,
            platform=conversation.platform,
            chat_id=conversation.chat_id,
            thread_id=conversation.thread_id,
            reply_to=conversation.message_id,
            body=reply.to_json(),
            now=self._clock.now(),
            replaces=replaces,
        )

    async def _unique_code(self, tx: Transaction) -> str:
        while True:
            code = new_code()
            if await tx.fetchone("SELECT 1 FROM approvals WHERE code = ?", (code,)) is None:
                return code
