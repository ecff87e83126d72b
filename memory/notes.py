"""Notes the operator asked to remember, with full-text search (SQLite FTS5)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.clock import from_iso, to_iso
from memory.store import Store, Transaction

_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to help a search; dropped unless they are all the query has.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "say",
        "said",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
    ]
)


@dataclass(frozen=True, slots=True)
class Note:
    """One stored note."""

    id: int
    text: str
    created_at: datetime
    score: float = 0.0


def _note(row: Any, score: float = 0.0) -> Note:
    return Note(
        id=int(row["id"]), text=row["text"], created_at=from_iso(row["created_at"]), score=score
    )


def fts_query(text: str) -> str | None:
    """Turn free text into a safe FTS5 query: any of its words, each as a prefix."""
    words = [w.lower() for w in _WORD.findall(text)]
    useful = [w for w in words if w not in _STOPWORDS] or words
    if not useful:
        return None
    unique = list(dict.fromkeys(useful))[:16]
    return " OR ".join(f'"{word}"*' for word in unique)


class NotesRepo:
    """Queries and writes over ``notes`` and its full-text index."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(
        self, tx: Transaction, *, text: str, source_key: str, now: datetime
    ) -> tuple[Note, bool]:
        """Store a note once per ``source_key``; return it and whether it is new."""
        inserted = await tx.execute(
            "INSERT OR IGNORE INTO notes (text, source_key, created_at) VALUES (?, ?, ?)",
            (text, source_key, to_iso(now)),
        )
        row = await tx.fetchone("SELECT * FROM notes WHERE source_key = ?", (source_key,))
        assert row is not None
        return _note(row), inserted != 0

    async def get(self, note_id: int) -> Note | None:
        """The note with this id, if any."""
        row = await self._store.fetchone("SELECT * FROM notes WHERE id = ?", (note_id,))
        return None if row is None else _note(row)

    async def delete(self, tx: Transaction, note_id: int) -> Note | None:
        """Delete a note; return what was deleted, or None if there was no such note."""
        row = await tx.fetchone("SELECT * FROM notes WHERE id = ?", (note_id,))
        if row is None:
            return None
        await tx.execute("DELETE FROM notes WHERE id = ?", (note_id,))
        return _note(row)

    async def latest(self, limit: int = 10) -> list[Note]:
        """The newest notes, newest first."""
        rows = await self._store.fetchall("SELECT * FROM notes ORDER BY id DESC LIMIT ?", (limit,))
        return [_note(row) for row in rows]

    async def count(self) -> int:
        """How many notes are stored."""
        return int(await self._store.scalar("SELECT COUNT(*) FROM notes"))

    async def search(self, query: str, limit: int = 5) -> list[Note]:
        """Notes matching any word of ``query``, best match first (BM25)."""
        match = fts_query(query)
        if match is None:
            return []
        rows = await self._store.fetchall(
            "SELECT notes.*, bm25(notes_fts) AS rank FROM notes_fts"
            " JOIN notes ON notes.id = notes_fts.rowid WHERE notes_fts MATCH ?"
            " ORDER BY rank LIMIT ?",
            (match, limit),
        )
        return [_note(row, score=-float(row["rank"])) for row in rows]
