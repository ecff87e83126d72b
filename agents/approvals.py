"""Approval cards: the operator's yes or no on one exact thing, decided once.

A card has a purpose — ``action`` (an agent asks before acting), ``dead_letter``
(Retry / Discard), ``reconcile`` (Mark done / Retry after a crash), ``budget``
(Extend today / Keep paused) — and two buttons. Their callback data are opaque,
unguessable tokens (``b:<22 url-safe chars>``, well inside Telegram's 64 bytes); a
short code allows ``/approve CODE`` / ``/reject CODE`` where buttons are missing.

``/edit CODE new text`` replaces the editable text of a pending action card (an action
declares which parameter, ``Action(editable="text")``): in one transaction the stored
action takes the new text, the old card is voided (its buttons answer "Already
voided") and a new card, bound to the new fingerprint, takes its place.

A decision is one transaction: a conditional UPDATE of the approval (pending and
unexpired, so two presses at once apply once), the purpose's handler (for an action:
the waiting task back in the queue), an event, and the card's edit queued in the
outbox. Expiry counts as the second button (reject) unless the purpose says otherwise.

A card for an action whose params carry files (``attachments`` with ``content_b64``, as
the email connector takes them) shows those files with it, so the operator sees the
exact document that will be sent: the proposing agent keeps them in the file store
first (content-addressed, so the desk finds them from the bytes it is asked about).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from agents.actions import action_spec
from agents.base import ApprovalDecision, NeedsApproval
from agents.delivery import queue_reply
from agents.fingerprint import fingerprint
from agents.intents import Conversation
from agents.replies import Attachment, Button, Reply
from agents.transitions import Mover
from memory.actions import ActionRepo
from memory.approvals import ApprovalRepo, ApprovalRow, ApprovalState
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.files import FileStore
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import TaskRepo, TaskState

BUTTON_PREFIX = "b:"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U
CODE_LENGTH = 6
DEFAULT_TTL = timedelta(hours=24)
APPROVE_REJECT = ("Approve", "Reject")

TITLES = {
    "action": "Approval needed",
    "dead_letter": "Action failed",
    "reconcile": "Did this go through?",
    "budget": "Budget reached",
}
EXPIRED_WORDS = {
    "dead_letter": "Expired (left in /failed)",
    "reconcile": "Expired (left in /failed for you to check)",
    "budget": "Expired (the agent stays paused)",
}

Handler = Callable[[Transaction, ApprovalRow, ApprovalState], Awaitable[None]]


class DecisionStatus(StrEnum):
    """What became of one attempt to decide."""

    APPLIED = "applied"
    ALREADY = "already_decided"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    NOT_EDITABLE = "not_editable"


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """The answer to show whoever pressed or typed (a callback answer, a reply)."""

    status: DecisionStatus
    message: str
    approval_id: int | None = None


def new_code() -> str:
    """A short code people can type: 6 characters, about 29 bits."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def new_button_data() -> str:
    """Opaque callback data for one button (128 random bits)."""
    return BUTTON_PREFIX + secrets.token_urlsafe(16)


def card_text(row: ApprovalRow, tz_label: str = "UTC") -> str:
    """The text of a pending card, with the typed fallback for each button."""
    yes, no = row.labels
    title = TITLES.get(row.purpose, "Decision needed")
    return (
        f"{title} ({row.agent})\n{row.summary}\n"
        f"Expires {row.expires_at:%Y-%m-%d %H:%M} {tz_label}. "
        f"{yes}: /approve {row.code} · {no}: /reject {row.code}"
    )


def decided_text(
    row: ApprovalRow, state: ApprovalState, by: str, at: datetime, zone: str = "UTC"
) -> str:
    """The text a card is edited to once it is decided (no buttons).

    ``by`` is who decided as people know them ("Ana"); ``at`` is shown in the operator's
    time zone ``zone``: "Approved by Ana at 15:13 CET on 2026-03-02".
    """
    yes, no = row.labels
    if row.labels == APPROVE_REJECT:
        chosen = {ApprovalState.APPROVED: "Approved", ApprovalState.REJECTED: "Rejected"}
    else:
        chosen = {ApprovalState.APPROVED: f"{yes} chosen", ApprovalState.REJECTED: f"{no} chosen"}
    verb = {
        **chosen,
        ApprovalState.EXPIRED: EXPIRED_WORDS.get(row.purpose, "Expired (counts as rejected)"),
        ApprovalState.VOIDED: "Voided (the action changed)",
    }[state]
    who = "" if state in (ApprovalState.EXPIRED, ApprovalState.VOIDED) else f" by {by}"
    local = at.astimezone(ZoneInfo(zone))
    return f"{verb}{who} at {local:%H:%M} {local.tzname()} on {local:%Y-%m-%d}\n{row.summary}"


def card_files(action: str, files: FileStore | None) -> tuple[Attachment, ...]:
    """The files an action's params carry, as kept in ``files`` (those found there)."""
    if files is None:
        return ()
    try:
        params = json.loads(action).get("params")
    except (ValueError, AttributeError):
        return ()
    listed = params.get("attachments") if isinstance(params, dict) else None
    shown: list[Attachment] = []
    for item in listed if isinstance(listed, list) else []:
        try:
            content = base64.b64decode(item["content_b64"], validate=True)
            filename = str(item["filename"])
            mime = str(item.get("content_type") or "application/octet-stream")
        except (KeyError, TypeError, binascii.Error):
            continue  # not a file the desk can show; the connector judges the params
        path = files.path_for(content, filename)
        if path.is_file():
            kind = "photo" if mime.startswith("image/") else "document"
            shown.append(Attachment(path=str(path), filename=filename, mime=mime, kind=kind))
    return tuple(shown)


def decision_of(row: ApprovalRow) -> ApprovalDecision | None:
    """The decision an approval row holds, if it has one."""
    if row.state is ApprovalState.PENDING:
        return None
    return ApprovalDecision(
        approval_id=row.id,
        outcome=row.state.value,  # type: ignore[arg-type]  # the non-pending states
        by=row.decided_by or "",
        fingerprint=row.fingerprint,
        name=row.decided_name,
    )


def edited_summary(summary: str, old: str, new: str) -> str:
    """A card's summary with the edited text in place of the old one (or added)."""
    if old and old in summary:
        return summary.replace(old, new)
    return f"{summary}\nEdited text:\n{new}"


class ApprovalDesk:
    """Creates cards and applies decisions on them."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        clock: Clock | None = None,
        default_ttl: timedelta = DEFAULT_TTL,
        files: FileStore | None = None,
        timezone: str = "UTC",
    ) -> None:
        self._store = store
        self._files = files
        self._zone = timezone
        self._events = events
        self._clock = clock or SystemClock()
        self._repo = ApprovalRepo(store)
        self._mover = Mover(store, events, self._clock)
        self._outbox = OutboxRepo(store)
        self.default_ttl = default_ttl
        # What a decision does, per card purpose; the coordinator registers its own.
        self.handlers: dict[str, Handler] = {"action": self._resume_waiting_task}

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
        purpose: str = "action",
        labels: tuple[str, str] = APPROVE_REJECT,
    ) -> ApprovalRow:
        """Store a card and queue it in ``conversation``."""
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
            expires_at=now + (need.ttl or self.default_ttl),
            purpose=purpose,
            labels=labels,
        )
        buttons = [(new_button_data(), decision) for decision in ("approve", "reject")]
        await self._repo.add_buttons(tx, row.id, buttons, now)
        await self._show(tx, row, conversation, buttons)
        await self._events.append(
            tx,
            f"{purpose}.card" if purpose != "action" else "approval.requested",
            actor=agent,
            subject=f"approval:{row.id}",
            payload={
                "task": task_id,
                "code": row.code,
                "purpose": purpose,
                "summary": need.summary[:200],
                "fingerprint": row.fingerprint[:16],
                "expires_at": row.expires_at.isoformat(),
            },
        )
        return row

    async def resend(self, tx: Transaction, row: ApprovalRow, conversation: Conversation) -> None:
        """Show a pending card again (``/pending``, ``/failed``); the new copy becomes the card."""
        await self._show(tx, row, conversation)

    async def decide_by_button(
        self, data: str, actor: str, name: str | None = None
    ) -> DecisionResult:
        """Apply the decision a button press carries (in a transaction of its own)."""
        async with self._store.write() as tx:
            return await self.decide_by_button_in(tx, data, actor, name)

    async def decide_by_button_in(
        self, tx: Transaction, data: str, actor: str, name: str | None = None
    ) -> DecisionResult:
        """Apply a button press inside ``tx``: the caller's record of the press and the
        decision commit together, or neither does.

        ``actor`` is the platform id (``telegram:12345``, kept in the event log);
        ``name`` the display name the platform gave with the press, shown on the card.
        """
        found = await self._repo.button(tx, data) if data.startswith(BUTTON_PREFIX) else None
        if found is None:
            await self._events.append(
                tx,
                "approval.unknown_button",
                actor=actor,
                subject="button",
                payload={"data_chars": len(data)},
            )
            return DecisionResult(DecisionStatus.UNKNOWN, "This button is not valid any more.")
        row, decision = found
        return await self._decide(tx, row, decision, actor, name)

    async def decide_by_code(
        self, code: str, decision: str, actor: str, name: str | None = None
    ) -> DecisionResult:
        """Apply ``/approve CODE`` or ``/reject CODE``."""
        async with self._store.write() as tx:
            row = await self._repo.by_code(tx, code.strip().upper())
            if row is None:
                return await self._unknown_code(tx, code, actor)
            return await self._decide(tx, row, decision, actor, name)

    async def _unknown_code(self, tx: Transaction, code: str, actor: str) -> DecisionResult:
        """Record a code no card has, and say where the codes are."""
        await self._events.append(
            tx,
            "approval.unknown_code",
            actor=actor,
            subject="approval",
            payload={"code": code[:16]},
        )
        return DecisionResult(
            DecisionStatus.UNKNOWN, f"No card has the code {code!r}. /pending lists them."
        )

    async def withdraw(self, row: ApprovalRow, reason: str) -> DecisionResult:
        """Reject a pending card for the operator because what it asks no longer holds
        (a follow-up for a lead that was won meanwhile): the card says why, the waiting
        task ends as rejected, nothing is sent. A card decided meanwhile stays as it is.
        """
        async with self._store.write() as tx:
            current = await self._repo.by_code(tx, row.code)
            if current is None or current.state is not ApprovalState.PENDING:
                return DecisionResult(DecisionStatus.ALREADY, "Already decided.", row.id)
            return await self._decide(tx, current, "reject", "system", f"soloops ({reason})")

    async def edit(self, code: str, text: str, actor: str) -> DecisionResult:
        """Replace the editable text of the pending action card ``code`` (``/edit``).

        The old card is voided and a new one raised for the changed action; the result's
        ``approval_id`` is the new card's. Nothing changes when the card is not pending,
        not an action, or its action has nothing editable.
        """
        async with self._store.write() as tx:
            row = await self._repo.by_code(tx, code.strip().upper())
            refusal = await self._edit_refusal(tx, row, code, actor)
            if refusal is not None:
                return refusal
            assert row is not None  # _edit_refusal answers for a missing card
            actions = ActionRepo(self._store)
            action = await actions.waiting_for_approval(tx, row.task_id)
            if action is None or action.editable is None:
                await self._events.append(
                    tx,
                    "approval.edit_refused",
                    actor=actor,
                    subject=f"approval:{row.id}",
                    payload={"reason": "not_editable"},
                )
                return DecisionResult(
                    DecisionStatus.NOT_EDITABLE,
                    "This card has no text to edit: approve or reject it as it is.",
                    row.id,
                )
            old_text = str(action.params.get(action.editable, ""))
            params = {**action.params, action.editable: text}
            summary = edited_summary(row.summary, old_text, text)
            spec = {**action_spec(action), "params": params}
            await actions.replace_params(
                tx,
                action.id,
                params=params,
                summary=summary,
                fingerprint=fingerprint(action.agent, spec),
                now=self._clock.now(),
            )
            await self.void(tx, row, f"edited by {actor}")
            conversation = Conversation.model_validate_json(row.conversation)
            new = await self.request(
                tx,
                task_id=row.task_id,
                agent=row.agent,
                need=NeedsApproval(summary=summary, action=spec),
                conversation=conversation,
            )
            await TaskRepo(self._store).set_checkpoint(
                tx, row.task_id, json.dumps({"action": action.id, "approval": new.id})
            )
            await self._events.append(
                tx,
                "approval.edited",
                actor=actor,
                subject=f"approval:{row.id}",
                payload={
                    "action": action.id,
                    "replaced_by": new.id,
                    "param": action.editable,
                    "chars": len(text),
                },
            )
        return DecisionResult(
            DecisionStatus.APPLIED, f"Edited: the new card is {new.code}.", new.id
        )

    async def _edit_refusal(
        self, tx: Transaction, row: ApprovalRow | None, code: str, actor: str
    ) -> DecisionResult | None:
        if row is None:
            return await self._unknown_code(tx, code, actor)
        reason = None
        decided = row.state is not ApprovalState.PENDING
        if decided:
            reason = f"It is already {row.state.value}; only a waiting card can be edited."
        elif row.expires_at <= self._clock.now():
            reason = "It has expired; only a waiting card can be edited."
        elif row.purpose != "action":
            reason = "It is not an action: approve or reject it as it is."
        if reason is None:
            return None
        await self._events.append(
            tx,
            "approval.edit_refused",
            actor=actor,
            subject=f"approval:{row.id}",
            payload={"reason": row.state.value if decided else row.purpose},
        )
        status = DecisionStatus.ALREADY if decided else DecisionStatus.NOT_EDITABLE
        return DecisionResult(status, f"{row.code}: {reason}", row.id)

    async def expire_due(self) -> int:
        """Expire every pending card whose time is up; return how many."""
        overdue = await self._repo.overdue(self._clock.now())
        for row in overdue:
            async with self._store.write() as tx:
                await self._expire(tx, row)
        return len(overdue)

    async def next_expiry(self) -> datetime | None:
        """When the next pending card expires."""
        return await self._repo.next_expiry()

    async def void(self, tx: Transaction, row: ApprovalRow, reason: str) -> None:
        """Void an approval whose action changed; edit its card."""
        now = self._clock.now()
        await self._mover.move(
            tx,
            row.id,
            ApprovalState.VOIDED,
            expect=row.state,
            event="approval.voided",
            payload={"reason": reason},
        )
        await self._edit_card(tx, row, ApprovalState.VOIDED, "system", now)

    async def _decide(
        self, tx: Transaction, row: ApprovalRow, decision: str, actor: str, name: str | None = None
    ) -> DecisionResult:
        now = self._clock.now()
        if row.state is not ApprovalState.PENDING:
            when = ""
            if row.decided_at:
                local = row.decided_at.astimezone(ZoneInfo(self._zone))
                when = f" at {local:%H:%M} {local.tzname()}"
            who = f" by {row.decider}" if row.decided_by not in (None, "expiry", "system") else ""
            await self._events.append(
                tx,
                "approval.repeat",
                actor=actor,
                subject=f"approval:{row.id}",
                payload={"state": row.state.value, "attempted": decision},
            )
            return DecisionResult(
                DecisionStatus.ALREADY, f"Already {row.state.value}{who}{when}.", row.id
            )
        if row.expires_at <= now:
            await self._expire(tx, row)
            if row.purpose == "action":
                message = "This approval expired; it counts as rejected."
            else:
                message = f"This card expired: {EXPIRED_WORDS.get(row.purpose, 'no change')}."
            return DecisionResult(DecisionStatus.EXPIRED, message, row.id)
        state = ApprovalState.APPROVED if decision == "approve" else ApprovalState.REJECTED
        if not await self._mover.move(
            tx,
            row.id,
            state,
            expect=ApprovalState.PENDING,
            by=actor,
            event="approval.decided",
            actor=actor,
            payload={
                "decision": state.value,
                "choice": row.labels[0 if decision == "approve" else 1],
                "purpose": row.purpose,
                "task": row.task_id,
                "code": row.code,
                **({"by_name": name[:128]} if name else {}),
            },
        ):
            return DecisionResult(DecisionStatus.ALREADY, "Already decided.", row.id)
        if name:
            await self._repo.set_decided_name(tx, row.id, name)
        await self.handlers.get(row.purpose, self._resume_waiting_task)(tx, row, state)
        await self._edit_card(tx, row, state, name or actor, now)
        word = row.labels[0 if state is ApprovalState.APPROVED else 1]
        if row.labels == APPROVE_REJECT:
            word = state.value.title()
        return DecisionResult(DecisionStatus.APPLIED, f"{word}.", row.id)

    async def _expire(self, tx: Transaction, row: ApprovalRow) -> None:
        now = self._clock.now()
        if not await self._mover.move(
            tx,
            row.id,
            ApprovalState.EXPIRED,
            expect=ApprovalState.PENDING,
            event="approval.expired",
            payload={"task": row.task_id, "code": row.code, "purpose": row.purpose},
        ):
            return
        handler = self.handlers.get(row.purpose, self._resume_waiting_task)
        await handler(tx, row, ApprovalState.EXPIRED)
        await self._edit_card(tx, row, ApprovalState.EXPIRED, "expiry", now)

    async def _resume_waiting_task(
        self, tx: Transaction, row: ApprovalRow, state: ApprovalState
    ) -> None:
        await self._mover.move(
            tx,
            row.task_id,
            TaskState.QUEUED,
            expect=TaskState.WAITING_APPROVAL,
            event="task.resumed",
            payload={"approval": row.id, "decision": state.value},
        )

    async def card(
        self, tx: Transaction, row: ApprovalRow, tokens: list[tuple[str, str]] | None = None
    ) -> Reply:
        """The pending card of ``row``: its text, its buttons and, when its action has
        text to edit, its code as ``edit_code`` (a Slack Home tab shows the same card).
        ``tokens`` are its (token, decision) pairs when just made (else they are read)."""
        labels = {"approve": row.labels[0], "reject": row.labels[1]}
        if tokens is None:
            tokens = await self._repo.buttons_of(tx, row.id)
        buttons = tuple(
            Button(
                label=labels[decision],
                data=token,
                style="primary" if decision == "approve" else "danger",
            )
            for token, decision in tokens
        )
        editable = None
        if row.purpose == "action":
            action = await ActionRepo(self._store).waiting_for_approval(tx, row.task_id)
            editable = row.code if action is not None and action.editable else None
        return Reply(
            text=card_text(row),
            buttons=buttons,
            attachments=card_files(row.action, self._files),
            edit_code=editable,
        )

    async def _show(
        self,
        tx: Transaction,
        row: ApprovalRow,
        conversation: Conversation,
        tokens: list[tuple[str, str]] | None = None,
    ) -> None:
        """Queue the card; ``tokens`` are its (token, decision) pairs when just made."""
        card = await self.card(tx, row, tokens)
        outbox_id = await self._queue(tx, conversation, card)
        await self._repo.set_card(tx, row.id, outbox_id)

    async def _edit_card(
        self, tx: Transaction, row: ApprovalRow, state: ApprovalState, by: str, at: datetime
    ) -> None:
        conversation = Conversation.model_validate_json(row.conversation)
        await self._queue(
            tx,
            conversation,
            Reply(text=decided_text(row, state, by, at, self._zone)),
            replaces=await self._card_outbox(tx, row.id),
        )

    async def _card_outbox(self, tx: Transaction, approval_id: int) -> int | None:
        fresh = await tx.fetchone(
            "SELECT card_outbox_id FROM approvals WHERE id = ?", (approval_id,)
        )
        return None if fresh is None else fresh["card_outbox_id"]

    async def notify(self, tx: Transaction, conversation: Conversation, reply: Reply) -> None:
        """Queue a plain message to the operator in ``conversation``."""
        await self._queue(tx, conversation, reply)

    async def _queue(
        self, tx: Transaction, conversation: Conversation, reply: Reply, replaces: int | None = None
    ) -> int:
        return await queue_reply(
            self._outbox, tx, conversation, reply, now=self._clock.now(), replaces=replaces
        )

    async def _unique_code(self, tx: Transaction) -> str:
        while True:
            code = new_code()
            if await self._repo.by_code(tx, code) is None:
                return code
