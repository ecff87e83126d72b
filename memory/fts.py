"""Keyword search helpers for SQLite FTS5: the fallback when no embedding model loads."""

from __future__ import annotations

import re

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


def fts_query(text: str) -> str | None:
    """Turn free text into a safe FTS5 query: any of its words, each as a prefix."""
    words = [w.lower() for w in _WORD.findall(text)]
    useful = [w for w in words if w not in _STOPWORDS] or words
    if not useful:
        return None
    unique = list(dict.fromkeys(useful))[:16]
    return " OR ".join(f'"{word}"*' for word in unique)
