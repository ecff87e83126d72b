from __future__ import annotations

import pytest

from memory.fts import fts_query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("acme", '"acme"*'),
        ("what did Acme say about billing?", '"acme"* OR "about"* OR "billing"*'),
        ('he said "NEAR" * OR -', '"he"* OR "near"*'),
        ("???", None),
        ("the", '"the"*'),
    ],
)
def test_fts_query_is_safe_and_useful(text: str, expected: str | None) -> None:
    assert fts_query(text) == expected
