"""The free-text router: the decision as a pure function, then with the real model."""

from __future__ import annotations

import pytest

from agents.feature import Phrasings
from agents.registry import build_registry
from agents.router import (
    RouterAgent,
    choose_route,
    command_for,
    looks_like_question,
    strip_lead_in,
)
from memory.embedder import SentenceTransformerEmbedder
from memory.events import EventLog


@pytest.mark.parametrize(
    ("scores", "question", "chosen"),
    [
        ({"remember": 0.7, "recall": 0.55}, False, "remember"),
        ({"remember": 0.7, "recall": 0.67}, False, None),  # too close to call
        ({"remember": 0.45, "recall": 0.2}, False, None),  # not similar enough
        ({"remember": 0.62, "recall": 0.6}, True, "recall"),  # a question leans to recall
        ({}, False, None),
    ],
)
def test_decide(scores: dict[str, float], question: bool, chosen: str | None) -> None:
    decision = choose_route(scores, threshold=0.5, margin=0.05, question=question)
    assert decision.chosen == chosen
    assert [c.kind for c in decision.ranked] == sorted(
        decision.ranked and [c.kind for c in decision.ranked],
        key=lambda k: -(scores[k] + (0.1 if question and k == "recall" else 0)),
    )


def test_decide_offers_at_most_three_close_choices() -> None:
    scores = {"a": 0.3, "b": 0.29, "c": 0.28, "d": 0.27}
    decision = choose_route(scores, threshold=0.5, margin=0.05)
    assert decision.chosen is None and [c.kind for c in decision.options] == ["a", "b", "c"]
    distant = choose_route(
        {"recall": 0.6, "remember": 0.59, "events": 0.22}, threshold=0.7, margin=0
    )
    assert [c.kind for c in distant.options] == ["recall", "remember"]
    assert len(distant.ranked) == 3  # the event log still sees every score


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("what did Acme say about billing?", True),
        ("When is the demo", True),
        ("Acme prefers invoices on the 1st", False),
        ("whatever happens, ship on Friday", False),
    ],
)
def test_looks_like_question(text: str, question: bool) -> None:
    assert looks_like_question(text) is question


def test_command_for_carries_the_text_only_where_the_intent_takes_it() -> None:
    assert command_for("recall", Phrasings("x", (), "query"), " Acme\n billing ") == (
        "/recall Acme billing"
    )
    assert command_for("status", Phrasings("x", ()), "how are things") == "/status"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        ("what did Acme say about billing?", "recall"),
        ("when does Acme want to be billed?", "recall"),
        ("Acme prefers invoices on the 1st of the month", "remember"),
        ("the meeting with Globex moved to Thursday", "remember"),
        ("show my notes", "notes"),
        ("what can you do", "help"),
        ("is everything ok?", "status"),
        ("Acme", None),
        ("banana", None),
    ],
)
async def test_real_model_routes_by_meaning(
    text: str, chosen: str | None, embedder: SentenceTransformerEmbedder, events: EventLog
) -> None:
    registry = build_registry()  # the phrasings of every default feature
    router = RouterAgent(registry.phrasings, embedder, events.record, registry.intent)
    scores = await router.scores(text)
    decision = choose_route(scores, threshold=0.5, margin=0.05, question=looks_like_question(text))
    assert decision.chosen == chosen


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("remember that the door code is 4411", "the door code is 4411"),
        ("Remember to call Jane on Monday", "call Jane on Monday"),
        ("note that Acme pays on the 1st", "Acme pays on the 1st"),
        ("note: Bob's number is 555 0101", "Bob's number is 555 0101"),
        ("save this: the wifi key is on the fridge", "the wifi key is on the fridge"),
        ("don't forget the domain renews in March", "the domain renews in March"),
        ("keep in mind that the office is closed", "the office is closed"),
        ("Globex signs next week", "Globex signs next week"),
        ("remember that", "remember that"),  # nothing would be left: keep it whole
    ],
)
def test_strip_lead_in_keeps_only_the_note(text: str, note: str) -> None:
    """Issue 10 item 16: on main the whole "remember that X" was stored."""
    assert strip_lead_in(text) == note
