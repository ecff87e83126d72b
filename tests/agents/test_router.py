"""The free-text router: the decision as a pure function, then with the real model."""

from __future__ import annotations

import pytest

from agents.feature import Phrasings
from agents.registry import build_registry
from agents.router import (
    RouterAgent,
    cannot_do,
    choose_route,
    closest_commands,
    command_for,
    is_bare_number,
    looks_like_question,
    looks_like_request,
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


def test_a_question_is_never_a_note_to_keep() -> None:
    """ "what is the door code?" reads like the remember phrasing "the door code is …"."""
    scores = {"remember": 0.79, "recall": 0.32, "help": 0.29}
    asked = choose_route(scores, threshold=0.5, margin=0.05, question=True, floor=0.4)
    assert asked.chosen == "recall"
    assert "remember" not in [c.kind for c in asked.ranked]
    told = choose_route(scores, threshold=0.5, margin=0.05, question=False, floor=0.4)
    assert told.chosen == "remember"


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


def test_nothing_fits_is_unsupported_and_only_a_question_falls_back_to_recall() -> None:
    """Issue 10 item 16: under the floor nothing is guessed and no menu is offered."""
    low = {"recall": 0.3, "remember": 0.28, "help": 0.2}
    statement = choose_route(low, threshold=0.5, margin=0.05, floor=0.4)
    assert statement.chosen is None and statement.unsupported and not statement.options
    question = choose_route(low, threshold=0.5, margin=0.05, floor=0.4, question=True)
    assert question.chosen == "recall" and not question.unsupported


def test_a_request_to_act_is_never_a_note_or_a_search() -> None:
    scores = {"recall": 0.58, "remember": 0.46, "remind": 0.26}
    assert choose_route(scores, threshold=0.5, margin=0.05, floor=0.4).chosen == "recall"
    request = choose_route(scores, threshold=0.5, margin=0.05, floor=0.4, request=True)
    assert request.chosen is None and request.unsupported and not request.options
    # A feature whose own phrasings match the request strongly still takes it.
    strong = choose_route(
        {"digest": 0.9, "recall": 0.6}, threshold=0.5, margin=0.05, floor=0.4, request=True
    )
    assert strong.chosen == "digest"


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("send an email to jane", True),
        ("Book a flight to Rome", True),
        ("please order pizza", True),
        ("can you send an email to Bob?", True),
        ("email the invoice to Acme", True),
        ("Acme sends invoices on the 1st", False),
        ("the call with Jane went well", False),
        ("what did Acme order?", False),
        ("Call with Jane went well", False),
        ("Order #123 shipped on Monday", False),
        ("Text of the contract is in the shared drive", False),
        ("Post office closes at 5", False),
    ],
)
def test_looks_like_request(text: str, asks: bool) -> None:
    assert looks_like_request(text) is asks


@pytest.mark.parametrize(
    ("text", "bare"), [("1", True), (" 2. ", True), ("#3", True), ("1 banana", False), ("", False)]
)
def test_is_bare_number(text: str, bare: bool) -> None:
    assert is_bare_number(text) is bare


def test_cannot_do_lists_the_closest_commands_with_their_usage() -> None:
    catalog = build_registry().catalog
    closest = closest_commands({"remind": 0.4, "remember": 0.3}, {"draft": 0.35}, catalog)
    assert [c.name for c in closest] == ["remind", "draft", "remember"]
    text = cannot_do(closest)
    lines = text.splitlines()
    assert lines[0] == "I can't do that yet." and lines[1] == "Closest:"
    assert lines[2] == "  /remind <when> <what> - " + closest[0].summary
    assert lines[-1] == "Send /help for all."


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        # Statements are notes, questions are searches, clear commands win.
        ("Bob's new phone number is 555 0199", "remember"),
        ("the client agreed to pay 800 euros per month", "remember"),
        ("who asked for a discount?", "recall"),
        ("find my notes on invoices", "recall"),
        ("who is Jane?", "recall"),
        ("in 20 minutes check the oven", "remind"),
        ("what reminders do I have", "reminders"),
        ("show the latest events", "events"),
        # A question nothing fits still searches the notes.
        ("what's the weather in Rome?", "recall"),
        # Ambiguous: the router asks (options), it does not refuse.
        ("Acme", "?options"),
        # Requests soloops cannot do: the closest commands, never a note or a search.
        ("send an email to jane", "!unsupported"),
        ("book a flight to Rome", "!unsupported"),
        ("order pizza", "!unsupported"),
        ("can you send an email to Bob?", "!unsupported"),
        ("pay the invoice from Globex", "!unsupported"),
        ("translate this to French", "!unsupported"),
        ("play some music", "!unsupported"),
        ("banana", "!unsupported"),
    ],
)
async def test_real_model_says_what_it_can_do_when_nothing_fits(
    text: str, chosen: str, embedder: SentenceTransformerEmbedder, events: EventLog
) -> None:
    """Issue 10 item 16, calibrated on the real model with the default settings."""
    registry = build_registry()
    router = RouterAgent(registry.phrasings, embedder, events.record, registry.intent)
    decision = choose_route(
        await router.scores(text),
        threshold=0.5,
        margin=0.05,
        floor=0.4,
        question=looks_like_question(text),
        request=looks_like_request(text),
    )
    if chosen == "!unsupported":
        assert decision.unsupported and decision.chosen is None and not decision.options
    elif chosen == "?options":
        assert not decision.unsupported and decision.chosen is None and decision.options
    else:
        assert decision.chosen == chosen and not decision.unsupported
