"""The ephemeral tier: the latest turns of each conversation, in process only.

Bounded twice (turns per conversation, conversations kept) and aged out, so it can
never grow without limit; it is gone after a restart by design. Recall can fold these
turns into its results, so "what did I just say about X" works before anything was
stored.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Turn:
    """One remembered turn."""

    text: str
    at: datetime


class EphemeralMemory:
    """Recent turns per conversation, least recently active conversations dropped first.

    Args:
        turns: turns kept per conversation.
        conversations: conversations kept at once.
        max_age: turns older than this are not returned.
    """

    def __init__(
        self, turns: int = 20, conversations: int = 256, max_age: timedelta = timedelta(hours=12)
    ) -> None:
        self._turns = turns
        self._conversations = conversations
        self._max_age = max_age
        self._by_conversation: OrderedDict[str, deque[Turn]] = OrderedDict()

    def add(self, conversation: str, text: str, at: datetime) -> None:
        """Remember one turn of ``conversation``."""
        if self._turns <= 0 or not text.strip():
            return
        turns = self._by_conversation.pop(conversation, None)
        if turns is None:
            turns = deque(maxlen=self._turns)
        turns.append(Turn(text, at))
        self._by_conversation[conversation] = turns
        while len(self._by_conversation) > self._conversations:
            self._by_conversation.popitem(last=False)

    def discard(self, text: str) -> int:
        """Drop every turn, in every conversation, that contains ``text`` (case and
        spacing aside): a forgotten note's words must not come back. Returns how many."""
        needle = " ".join(text.casefold().split())
        if not needle:
            return 0
        dropped = 0
        for conversation, turns in list(self._by_conversation.items()):
            kept = [t for t in turns if needle not in " ".join(t.text.casefold().split())]
            if len(kept) != len(turns):
                dropped += len(turns) - len(kept)
                self._by_conversation[conversation] = deque(kept, maxlen=self._turns)
        return dropped

    def recent(self, conversation: str, now: datetime) -> list[Turn]:
        """The conversation's turns that are not too old, oldest first."""
        turns = self._by_conversation.get(conversation, ())
        return [turn for turn in turns if now - turn.at <= self._max_age]

    def __len__(self) -> int:
        return sum(len(turns) for turns in self._by_conversation.values())
