"""The notes feature: /remember, /recall, /forget, /notes over semantic memory.

Its namespace in memory is ``notes``. /remember stores a durable memory keyed by the
task's idempotency key, so a rerun after a crash never stores it twice. /recall
searches by meaning: notes first, each once and dated, none under the relevance
cutoff (``recall_min_score``), then the conversation's recent turns that add
something, and the namespaces other features share with it (such as what the leads
feature keeps about contacts: read only, /forget deletes only notes). While the model
is still loading it waits, and if the model cannot load at all it falls back to
keywords and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from agents.base import Agent, TaskContext
from agents.errors import Refusal
from agents.feature import CommandSpec, Feature, Phrasings, limit_arg
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.errors import NotFoundError, OwnershipError
from memory.memories import Memory
from memory.semantic import Hit, MemorySpace, Recall

PREVIEW = 200
NAMESPACE = "notes"


class RememberIntent(Intent):
    """Store a note."""

    kind: Literal["remember"] = "remember"
    text: str = Field(min_length=1)


class RecallIntent(Intent):
    """Find notes."""

    kind: Literal["recall"] = "recall"
    query: str = Field(min_length=1)
    limit: int = Field(default=5, ge=1, le=20)


class ForgetIntent(Intent):
    """Delete a note."""

    kind: Literal["forget"] = "forget"
    note_id: int = Field(ge=1)


class NotesIntent(Intent):
    """List the newest notes."""

    kind: Literal["notes"] = "notes"
    limit: int = Field(default=10, ge=1, le=50)


def _forget_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes exactly one note id")
    return {"note_id": tokens[0].lstrip("#")}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def note_line(memory: Memory, zone: tzinfo = UTC) -> str:
    """One note as a line: id, date (the operator's day) and (shortened) text."""
    return f"#{memory.id} ({memory.created_at.astimezone(zone):%Y-%m-%d}) {_clip(memory.text)}"


def short_date(moment: datetime, now: datetime) -> str:
    """A day as people write it: "12 Nov", with the year when it is not this year."""
    day = f"{moment.day} {moment:%b}"
    return day if moment.year == now.year else f"{day} {moment.year}"


def hit_line(hit: Hit, now: datetime) -> str:
    """One recalled note: id, date and text, e.g. ``#4 (12 Nov) Acme pays on the 1st``;
    the day is the one in ``now``'s zone (the operator's), not UTC's."""
    when = hit.created_at.astimezone(now.tzinfo) if now.tzinfo else hit.created_at
    return f"#{hit.memory_id} ({short_date(when, now)}) {_clip(hit.text)}"


def render_recall(query: str, recall: Recall, note_after_s: float, now: datetime) -> str:
    """The /recall reply: the notes first, then what this chat said recently that the
    notes do not already hold."""
    lines: list[str] = []
    if not recall.semantic:
        lines.append("(The language model is unavailable, so this is a keyword search.)")
    notes = [hit for hit in recall.hits if hit.memory_id is not None]
    turns = [hit for hit in recall.hits if hit.memory_id is None]
    if not recall.hits:
        lines.append(f"Nothing relevant about {query!r}. /notes lists the newest.")
    lines += [hit_line(hit, now) for hit in notes]
    if turns:
        lines.append("Said earlier in this chat (not saved):")
        lines += [f"  {_clip(hit.text)}" for hit in turns]
    if recall.waited_s >= note_after_s:
        lines.append(f"(Waited {recall.waited_s:.0f} s for the memory model to load.)")
    return "\n".join(lines)


class NotesAgent(Agent):
    """Keeps what the operator asks it to remember."""

    name = "notes"

    def __init__(
        self,
        space: MemorySpace,
        *,
        note_after_s: float = 2.0,
        also: Sequence[str] = (),
        clock: Clock | None = None,
        timezone: str = "UTC",
    ) -> None:
        self._space = space
        self._zone = ZoneInfo(timezone)
        self._note_after_s = note_after_s
        self._also = tuple(also)
        self._clock = clock or SystemClock()

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        actor = intent.conversation.actor
        match intent:
            case RememberIntent(text=text):
                # Keyed by the task: a rerun after a crash finds the note instead of adding it.
                memory, _ = await self._space.remember(
                    text.strip(), source_key=ctx.idempotency_key, actor=actor
                )
                return [Reply(text=f"Remembered #{memory.id}.")]
            case RecallIntent(query=query, limit=limit):
                recall = await self._space.search(
                    query, also=self._also, limit=limit, conversation=intent.conversation.lane
                )
                text = render_recall(query, recall, self._note_after_s, self._now())
                return [Reply(text=text)]
            case ForgetIntent(note_id=note_id):
                try:
                    await self._space.forget(note_id, actor=actor)
                except NotFoundError:
                    raise Refusal(f"There is no note #{note_id}. /notes lists them.") from None
                except OwnershipError:
                    raise Refusal(
                        f"#{note_id} is not a note: another agent keeps it, so /forget cannot"
                        " delete it."
                    ) from None
                return [Reply(text=f"Forgot #{note_id}.")]
            case NotesIntent(limit=limit):
                notes = await self._space.latest(limit)
                if not notes:
                    return [Reply(text="No notes yet. Save one with /remember <text>.")]
                return [Reply(text="\n".join(note_line(note, self._zone) for note in notes))]
        raise AssertionError(f"notes got an intent it does not handle: {intent.kind}")

    def _now(self) -> datetime:
        return self._clock.now().astimezone(self._zone)


def build(ports: Ports) -> NotesAgent:
    """The notes agent over its own memory namespace."""
    return NotesAgent(
        ports.memory(NAMESPACE),
        note_after_s=ports.settings.memory.load_note_after_s,
        also=ports.shared_memory,
        clock=ports.clock,
        timezone=ports.settings.timezone,
    )


FEATURE = Feature(
    name="notes",
    build=build,
    bind="remember",  # plain text in a topic bound to notes is a /remember
    intents=(RememberIntent, RecallIntent, ForgetIntent, NotesIntent),
    commands=(
        CommandSpec(
            "remember",
            "remember",
            "remember <text>",
            "save a note",
            "/remember Acme pays invoices on the 1st",
            "text",
            lambda text: {"text": text},
        ),
        CommandSpec(
            "recall",
            "recall",
            "recall <query>",
            "find notes about something",
            "/recall acme billing",
            "text",
            lambda text: {"query": text},
        ),
        CommandSpec(
            "forget", "forget", "forget <id>", "delete a note", "/forget 12", "tokens", _forget_args
        ),
        CommandSpec("notes", "notes", "notes [n]", "the newest notes", "", "tokens", limit_arg),
    ),
    phrasings={
        "remember": Phrasings(
            "Save it as a note",
            (
                "remember that Acme wants the invoice by Friday",
                "remember that the door code is 1234",
                "note: Bob's new phone number is 555 0101",
                "keep in mind that the office is closed on Monday",
                "Jane prefers calls in the morning",
                "the client agreed to pay 500 euros per month",
                "don't forget the domain renews in March",
                "save this: the wifi password for the studio is on the fridge",
                "Globex said they will sign next week",
            ),
            text_field="text",
        ),
        "recall": Phrasings(
            "Search my notes",
            (
                "what did Acme say about billing?",
                "when does Bob want to be called?",
                "what do I know about Globex?",
                "do I have anything about the renewal?",
                "find my notes on invoices",
                "what was the phone number of the plumber?",
                "remind me what Jane prefers",
                "who asked for a discount?",
            ),
            text_field="query",
        ),
        "notes": Phrasings(
            "List the newest notes",
            ("show my notes", "list my latest notes", "what have I saved recently"),
        ),
    },
    namespaces=frozenset({NAMESPACE}),
)
