"""Putting a reply into the outbox, addressed to the conversation it answers."""

from __future__ import annotations

from datetime import datetime

from agents.intents import Conversation
from agents.replies import Reply
from memory.outbox import OutboxRepo
from memory.store import Transaction


async def queue_reply(
    outbox: OutboxRepo,
    tx: Transaction,
    conversation: Conversation,
    reply: Reply,
    *,
    now: datetime,
    task_id: int | None = None,
    replaces: int | None = None,
    claim: bool = False,
) -> int:
    """Store ``reply`` for delivery in ``conversation`` (as an edit of ``replaces``, if
    given); return its outbox id. ``claim``: see :meth:`OutboxRepo.enqueue`."""
    return await outbox.enqueue(
        tx,
        platform=conversation.platform,
        chat_id=conversation.chat_id,
        thread_id=conversation.thread_id,
        reply_to=conversation.message_id,
        body=reply.to_json(),
        now=now,
        task_id=task_id,
        replaces=replaces,
        decoded=reply,
        claim=claim,
    )
