"""The gateway: every inbound message passes here on its way to the coordinator.

    adapter -> Gateway.handle(inbound):
        record (dedupe) -> operator check -> input checks -> choice -> binding -> route -> task

"choice": when the conversation's last reply offered options and the message is just a
number, the message stands for that option's command (a console's numbered answer; a
button press can use the same path).

"binding": plain text in a conversation bound to a feature (``/bind invoices`` in a
forum topic) is read as that feature's command (:mod:`bot.topics`).

All of it happens in one write transaction: the message, its events and either its
task, its decision (a button press: the approval, the card's edit, the waiting task
back in the queue) or the short reply that explains why there is none commit together. A message
is therefore never acknowledged without being stored, and bad input never costs
anything already stored.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from agents.approvals import DecisionStatus
from agents.coordinator import Coordinator
from agents.delivery import queue_reply
from agents.intents import Conversation, Intent
from agents.ops import DecideIntent
from agents.registry import Registry
from agents.replies import Reply, error, pick_option
from bot.grammar import Rejection, parse
from bot.inbound import Inbound
from bot.topics import apply_binding, binding_place
from memory.bindings import BindingRepo
from memory.events import EventLog
from memory.inbound import InboundRepo
from memory.outbox import OutboxRepo
from memory.store import Store, Transaction
from memory.tasks import TaskState

log = logging.getLogger(__name__)

PREVIEW = 200
STORE_LIMIT = 1_000_000  # characters of one message kept in the inbound log
# A numbered answer counts only this soon after the options were offered.
CHOICE_TTL = timedelta(minutes=15)
# Fields of an intent that soloops sets; a hook's payload may not.
RESERVED_FIELDS = frozenset({"kind", "conversation", "idempotency_key", "scheduled"})


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


def hook_intent(
    registry: Registry,
    hook: str,
    kind: str,
    delivery_id: str,
    payload: Mapping[str, Any],
    home: Conversation | None,
) -> Intent | Rejection:
    """The intent an inbound hook's payload stands for, or why it stands for none.

    The intent answers in the operator's home conversation (as the operator: the hook
    acts on their behalf, so approvals stay theirs) and is keyed by hook and delivery id.
    """
    feature = registry.feature_for(kind)
    if feature is None or kind in registry.control_kinds:
        known = sorted(
            k for f in registry.features for k in f.kinds if k not in registry.control_kinds
        )
        return Rejection(
            "unknown_kind",
            f"hook '{hook}' is set to intent '{kind}', which soloops does not take from a hook"
            f" (known: {', '.join(known)}); fix intent in [inbound.{hook}]",
        )
    reserved = sorted(RESERVED_FIELDS & set(payload))
    if reserved:
        return Rejection(
            "reserved_field", f"field '{reserved[0]}' is set by soloops; leave it out of the body"
        )
    if home is None:
        return Rejection(
            "no_home",
            "soloops has no home conversation to report to; the operator sets "
            "SOLOOPS_DIGEST__TO or runs a chat front end",
        )
    conversation = Conversation(
        platform=home.platform, chat_id=home.chat_id, user_id=home.user_id, thread_id=home.thread_id
    )
    try:
        return registry.intent(kind, conversation, f"hook:{hook}:{delivery_id}", **payload)
    except ValidationError as exc:
        return Rejection("invalid_payload", payload_problem(kind, exc))


def payload_problem(kind: str, exc: ValidationError) -> str:
    """One short line naming the fields of a payload that do not fit intent ``kind``."""
    parts = []
    for item in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in item["loc"] if p != kind) or "the body"
        parts.append(f"field '{where}': {item['msg']}")
    more = len(exc.errors()) - len(parts)
    extra = f" (and {more} more)" if more > 0 else ""
    return f"the payload does not fit intent '{kind}': {'; '.join(parts)}{extra}"


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
        self._bindings = BindingRepo(store, events)
        self._on_reply = on_reply

    async def handle(self, inbound: Inbound) -> Handled:
        """Take one message: store it, then queue its task or explain the refusal."""
        actor = f"{inbound.platform}:{inbound.user_id}"
        subject = f"message:{inbound.platform}:{inbound.message_id}"
        press = inbound.callback_data
        decide: DecideIntent | None = None
        finished = False
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
                if problem is None and inbound.audio is None:
                    text = await self._bound(tx, inbound, text, actor, subject)
                result = problem or parse(
                    text, inbound.conversation, inbound.idempotency_key, self._coordinator.registry
                )
                if inbound.audio is not None:  # a voice note: the voice feature hears it
                    result = self._coordinator.registry.intent(
                        "voice", inbound.conversation, inbound.idempotency_key, audio=inbound.audio
                    )
                if isinstance(result, Rejection):
                    seq = await self._reject(tx, inbound, result, actor, subject)
                    handled = Handled(Outcome.REJECTED, seq)
                elif isinstance(result, DecideIntent):
                    decide = result
                    handled = Handled(Outcome.DECIDED, seq)
                else:
                    task, _ = await self._coordinator.enqueue(tx, result)
                    # Answered inside this transaction (an inline kind): nothing to dispatch.
                    finished = task.state is TaskState.SUCCEEDED
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
        if handled.outcome is Outcome.DECIDED or (
            handled.outcome is Outcome.QUEUED and not finished
        ):
            self._coordinator.wake()
        self._on_reply()
        return handled

    async def handle_hook(
        self,
        hook: str,
        kind: str,
        delivery_id: str,
        payload: Mapping[str, Any],
        home: Conversation | None,
        received_at: datetime,
    ) -> Handled:
        """Take one verified inbound-hook request as a message: store it, then queue its
        task (answering in ``home``) or explain why there is none, in one transaction.

        The request goes in the inbound log as platform ``hook:<name>`` with the delivery
        id as its message id, so a repeat is a duplicate and runs nothing. An unknown
        intent or a payload that does not fit it is rejected (``notice`` says why) with
        a ``hook.invalid`` event, and nothing is stored or run.
        """
        platform = f"hook:{hook}"
        subject = f"message:{platform}:{delivery_id}"
        built = hook_intent(self._coordinator.registry, hook, kind, delivery_id, payload, home)
        async with self._store.write() as tx:
            if await self._inbound.seen(tx, platform, delivery_id):
                seq = await self._events.append(
                    tx, "message.duplicate", actor=platform, subject=subject, payload={}
                )
                return Handled(Outcome.DUPLICATE, seq)
            if isinstance(built, Rejection):
                seq = await self._events.append(
                    tx,
                    "hook.invalid",
                    actor=platform,
                    subject=subject,
                    payload={"intent": kind, "reason": built.reason, "message": built.message},
                )
                return Handled(Outcome.REJECTED, seq, notice=built.message)
            text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
            conversation = built.conversation
            seq = await self._events.append(
                tx,
                "message.received",
                actor=platform,
                subject=subject,
                payload={
                    "chat": conversation.chat_id,
                    "intent": kind,
                    "fields": sorted(payload),
                    "chars": len(text),
                    "text": text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…",
                },
            )
            await self._inbound.record(
                tx,
                platform=platform,
                message_id=delivery_id,
                chat_id=conversation.chat_id,
                thread_id=conversation.thread_id,
                user_id=platform,
                text=text[:STORE_LIMIT],
                received_at=received_at,
                event_seq=seq,
            )
            # Said before the task's own answer, in the same transaction: the operator
            # sees where the work came from even if soloops stops before it runs.
            await queue_reply(
                self._outbox,
                tx,
                conversation,
                Reply(text=f"From hook '{hook}': a {kind} request came in; working on it."),
                now=received_at,
            )
            task, _ = await self._coordinator.enqueue(tx, built)
        self._coordinator.wake()
        self._on_reply()
        return Handled(Outcome.QUEUED, seq, task.id)

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

    async def _bound(
        self, tx: Transaction, inbound: Inbound, text: str, actor: str, subject: str
    ) -> str:
        """Plain text in a conversation bound to a feature (``/bind``) is its command."""
        if not text.strip() or text.lstrip().startswith("/"):
            return text  # commands keep working in a bound topic; no lookup for them
        binding = await self._bindings.get(binding_place(inbound.conversation), tx)
        bound = apply_binding(text, binding, self._coordinator.registry)
        if bound is None or binding is None:
            return text
        await self._events.append(
            tx,
            "message.bound",
            actor=actor,
            subject=subject,
            payload={"feature": binding.feature, "command": bound.split(maxsplit=1)[0]},
        )
        return bound

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
    if inbound.audio is not None:
        described["audio"] = inbound.audio.model_dump(exclude_none=True)
    return described
