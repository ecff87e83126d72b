"""The contract every agent fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from agents.intents import Intent
from agents.replies import Reply


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What an agent knows about the task it is running."""

    task_id: int
    attempt: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Examples:
    """How operators phrase an intent in plain words, for the free-text router.

    ``text_field`` names the intent field that receives the whole message (``query``
    for recall); None means the intent takes no text. ``label`` is what a choice
    button says when the router has to ask.
    """

    label: str
    phrasings: tuple[str, ...]
    text_field: str | None = None


class Agent(ABC):
    """A typed agent: handles some intent kinds, returns replies.

    ``handle`` may be called again for the same task after a crash, so anything it
    stores must be keyed by ``ctx.idempotency_key`` (or the intent's) to happen once.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]
    # Example phrasings per intent kind, kept beside the agent that handles them.
    examples: ClassVar[Mapping[str, Examples]] = {}

    @abstractmethod
    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        """Do the work of one intent."""
