"""The gateway: every inbound message passes here on its way to the coordinator.

    adapter -> Gateway.handle(inbound):
        record (dedupe) -> operator check -> input checks -> choice -> route -> task

"choice": when the conversation's last reply offered options and the message is just a
number, the message stands for that option's command (a console's numbered answer; a
button press can use the same path).

All of it happens in one write transaction: the message, its events and either its
task, its decision (a button press: the approval, the card's edit, the waiting task
back in the queue) or the short reply that explains why there is none commit together. A message
is therefore never acknowledged without being stored, and bad input never costs
anything already stored.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from agents.approvals import DecisionStatus
from agents.coordinator import Coordinator
from agents.delivery import queue_reply
from agents.ops import DecideIntent
from agents.replies import Reply, error, pick_option
from bot.grammar import Rejection, parse
from bot.inbound import Inbound
from memory.events import EventLog
from memory.inbound import InboundRepo
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction

log = logging.getLogger(__name__)

PREVIEW = 200
STORE_LIMIT = 1_000_000  # characters of one message kept in the inbound log
# A numbered answer counts only this soon after the options were offered.
CHOICE_TTL = timedelta(minutes=15)


class Outcome(StrEnum):
    """What became of one inbound message."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    REJECTED = "rejected"
    DECIDED = "decided"


@dataclass(frozen=True, slots=True)
class Handled:
    """The gateway's answer for one message."""

    outcome: Outcome
    event_seq: int
    task_id: int | None = None
    notice: str | None = None  # a short word for the presser (a callback answer, an ephemeral)


class OperatorCheck:
    """Who may command soloops. The console user is the operator by construction."""

    def __init__(self, allowed: dict[str, frozenset[str]] | None = None) -> None:
        self._allowed = allowed or {}

    def is_operator(self, platform: str, user_id: str) -> bool:
        if platform == "console":
            return True
        return user_id in self._allowed.get(platform, frozenset())


def input_problem(text: str, max_chars: int) -> Rejection | None:
    """Checks every message passes before it is parsed: length and plain text."""
    if len(text) > max_chars:
        return Rejection(
            "too_long",
            f"That message is {len(text):,} characters; the limit is {max_chars:,}. "
            "Nothing was run. Split it, or keep the long text elsewhere and /remember a summary.",
        )
    if "\ufffd" in text or any(
        unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in "\t\n\r" for ch in text
    ):
        return Rejection(
            "not_text",
            "That message has bytes that are not readable text (control characters or invalid "
            "UTF-8). Nothing was run. Send plain text.",
        )
    return None


class Gateway:
    """Records, checks and routes inbound messages."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        coordinator: Coordinator,
        *,
        operators: OperatorCheck | None = None,
        max_message_chars: int = 16000,
        on_reply: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._events = events
        self._coordinator = coordinator
        self._operators = operators or OperatorCheck()
        self._max_chars = max_message_chars
        self._inbound = InboundRepo(store)
        self._outbox = OutboxRepo(store)
        self._on_reply = on_reply

    async def handle(self, inbound: Inbound) -> Handled:
        """Take one message: store it, then queue its task or explain the refusal."""
        actor = f"{inbound.platform}:{inbound.user_id}"
        subject = f"message:{inbound.platform}:{inbound.message_id}"
        press = inbound.callback_data
        decide: DecideIntent | None = None
        async with self._store.write() as tx:
            if await self._inbound.seen(tx, inbound.platform, inbound.message_id):
                seq = await self._events.append(
                    tx, "message.duplicate", actor=actor, subject=subject, payload={}
                )
                return Handled(Outcome.DUPLICATE, seq)
            seq = await self._events.append(
                tx, "message.received", actor=actor, subject=subject, payload=_describe(inbound)
            )
            await self._inbound.record(
                tx,
                platform=inbound.platform,
                message_id=inbound.message_id,
                chat_id=inbound.chat_id,
                thread_id=inbound.thread_id,
                user_id=inbound.user_id,
                text=inbound.text[:STORE_LIMIT],
                received_at=inbound.received_at,
                event_seq=seq,
            )
            if not self._operators.is_operator(inbound.platform, inbound.user_id):
                seq = await self._events.append(
                    tx,
                    "message.refused",
                    actor=actor,
                    subject=subject,
                    payload={"reason": "not_operator", "user_name": inbound.user_name},
                )
                return Handled(Outcome.REFUSED, seq, notice="Not allowed.")
            if press is not None:
                # Recorded and applied in one transaction: a crash or failure between the
                # two cannot leave a stored press with its card still pending.
                verdict = await self._coordinator.approvals.decide_by_button_in(
                    tx, press, actor, display_name(inbound)
                )
                handled = Handled(Outcome.DECIDED, seq, notice=verdict.message)
            else:
                problem = input_problem(inbound.text, self._max_chars)
                text = inbound.text if problem else await self._choice(tx, inbound, actor, subject)
                result = problem or parse(
                    text, inbound.conversation, inbound.idempotency_key, self._coordinator.registry
                )
                if isinstance(result, Rejection):
                    seq = await self._reject(tx, inbound, result, actor, subject)
                    handled = Handled(Outcome.REJECTED, seq)
                elif isinstance(result, DecideIntent):
                    decide = result
                    handled = Handled(Outcome.DECIDED, seq)
                else:
                    task, _ = await self._coordinator.enqueue(tx, result)
                    handled = Handled(Outcome.QUEUED, seq, task.id)
        # A typed decision runs after the message is committed: recorded first, applied once.
        if decide is not None:
            verdict = await self._coordinator.approvals.decide_by_code(
                decide.code, decide.decision, actor, display_name(inbound)
            )
            reply = Reply(text=f"{decide.code.upper()}: {verdict.message}")
            if verdict.status is not DecisionStatus.APPLIED:
                reply = error(reply.text)
            async with self._store.write() as tx:
                await self._queue(tx, inbound, reply)
            handled = Handled(Outcome.DECIDED, seq, notice=verdict.message)
        if handled.outcome in (Outcome.QUEUED, Outcome.DECIDED):
            self._coordinator.wake()
        self._on_reply()
        return handled

    async def _choice(self, tx: Transaction, inbound: Inbound, actor: str, subject: str) -> str:
        """A bare number answering the conversation's last reply's options means that
        option's command; anything else is taken as typed."""
        if not inbound.text.strip()[:4].rstrip(". ").isdecimal():
            return inbound.text
        last = await self._outbox.latest_for(
            tx, inbound.platform, inbound.chat_id, inbound.thread_id
        )
        if last is None or inbound.received_at - last.created_at > CHOICE_TTL:
            return inbound.text
        try:
            options = Reply.from_json(last.body).options
        except ValueError:
            return inbound.text
        option = pick_option(inbound.text, options)
        if option is None:
            return inbound.text
        await self._events.append(
            tx,
            "choice.picked",
            actor=actor,
            subject=subject,
            payload={"reply": last.id, "option": options.index(option) + 1},
        )
        return option.command

    async def _reject(
        self, tx: Transaction, inbound: Inbound, rejection: Rejection, actor: str, subject: str
    ) -> int:
        seq = await self._events.append(
            tx,
            "command.rejected",
            actor=actor,
            subject=subject,
            payload={"reason": rejection.reason, "message": rejection.message},
        )
        reply: Reply = (
            error(rejection.message)
            if rejection.reason != "free_text"
            else Reply(text=rejection.message)
        )
        await self._queue(tx, inbound, reply)
        return seq

    async def _queue(self, tx: Transaction, inbound: Inbound, reply: Reply) -> None:
        await queue_reply(self._outbox, tx, inbound.conversation, reply, now=inbound.received_at)


def display_name(inbound: Inbound) -> str | None:
    """The name the platform gave the sender, as a decided card shows it ("Ana").

    Telegram's front end sends ``full name (@username)``: the full name is enough.
    """
    full, _, handle = (inbound.user_name or "").partition(" (@")
    name = full.strip() or handle.rstrip(")").strip()
    return name or None


def _describe(inbound: Inbound) -> dict[str, object]:
    text = inbound.text
    preview = text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"
    described: dict[str, object] = {
        "chat": inbound.chat_id,
        "chars": len(text),
        "text": preview,
    }
    if inbound.thread_id:
        described["thread"] = inbound.thread_id
    if inbound.callback_data:
        described["button"] = True
    return described
