"""The notes agent: /remember, /recall, /forget, /notes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

from agents.base import Agent, TaskContext
from agents.errors import AgentError
from agents.intents import ForgetIntent, Intent, NotesIntent, RecallIntent, RememberIntent
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.notes import Note, NotesRepo
from memory.store import Store

PREVIEW = 200


def note_line(note: Note) -> str:
    """One note as a line: id, date and (shortened) text."""
    text = " ".join(note.text.split())
    if len(text) > PREVIEW:
        text = text[: PREVIEW - 1] + "…"
    return f"#{note.id} ({note.created_at:%Y-%m-%d}) {text}"


def fingerprint(text: str) -> str:
    """A short digest that identifies a note's text in events without storing it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class NotesAgent(Agent):
    """Keeps what the operator asks it to remember."""

    name: ClassVar[str] = "notes"
    kinds: ClassVar[frozenset[str]] = frozenset({"remember", "recall", "forget", "notes"})

    def __init__(self, store: Store, events: EventLog, clock: Clock | None = None) -> None:
        self._store = store
        self._events = events
        self._notes = NotesRepo(store)
        self._clock = clock or SystemClock()

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        match intent:
            case RememberIntent(text=text):
                return [await self._remember(text.strip(), intent.conversation.actor, ctx)]
            case RecallIntent(query=query, limit=limit):
                return [await self._recall(query, limit)]
            case ForgetIntent(note_id=note_id):
                return [await self._forget(note_id, intent.conversation.actor)]
            case NotesIntent(limit=limit):
                notes = await self._notes.latest(limit)
                if not notes:
                    return [Reply(text="No notes yet. Save one with /remember <text>.")]
                return [Reply(text="\n".join(note_line(note) for note in notes))]
        raise AssertionError(f"notes got an intent it does not handle: {intent.kind}")

    async def _remember(self, text: str, actor: str, ctx: TaskContext) -> Reply:
        async with self._store.write() as tx:
            # Keyed by the task: a rerun after a crash finds the note instead of adding it twice.
            note, created = await self._notes.add(
                tx, text=text, source_key=ctx.idempotency_key, now=self._clock.now()
            )
            if created:
                await self._events.append(
                    tx,
                    "note.created",
                    actor=actor,
                    subject=f"note:{note.id}",
                    payload={"chars": len(text), "sha256": fingerprint(text), "task": ctx.task_id},
                )
        return Reply(text=f"Remembered #{note.id}.")

    async def _recall(self, query: str, limit: int) -> Reply:
        found = await self._notes.search(query, limit)
        if not found:
            return Reply(text=f"Nothing found for {query!r}. /notes lists the newest notes.")
        return Reply(text="\n".join(note_line(note) for note in found))

    async def _forget(self, note_id: int, actor: str) -> Reply:
        async with self._store.write() as tx:
            note = await self._notes.delete(tx, note_id)
            if note is None:
                raise AgentError(f"There is no note #{note_id}. /notes lists them.")
            await self._events.append(
                tx,
                "note.deleted",
                actor=actor,
                subject=f"note:{note_id}",
                payload={"chars": len(note.text), "sha256": fingerprint(note.text)},
            )
        return Reply(text=f"Forgot #{note_id}.")
