"""How a recall orders and trims its hits (issue 10 item 17): plain functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agents.notes import note_line, render_recall, short_date
from memory.ephemeral import EphemeralMemory
from memory.memories import Memory, Tier
from memory.semantic import Hit, Recall, rank_hits

NOW = datetime(2026, 11, 12, 9, 0, tzinfo=UTC)


def note(memory_id: int, text: str, score: float) -> Hit:
    return Hit(memory_id, "notes", Tier.DURABLE, text, score, NOW - timedelta(days=1))


def turn(text: str, score: float) -> Hit:
    return Hit(None, "", Tier.EPHEMERAL, text, score, NOW)


def test_notes_come_first_each_once_and_turns_only_when_they_add_something() -> None:
    notes = [note(4, "Acme pays on the 1st", 0.6), note(4, "Acme pays on the 1st", 0.6)]
    notes += [note(7, "acme  pays on the 1st", 0.59), note(9, "Lunch with Carol", 0.05)]
    turns = [
        turn("what does Acme pay?", 0.9),  # the question itself
        turn("Acme pays on the 1st", 0.8),  # a note holds it already
        turn("Acme is slow to answer", 0.7),
        turn("Acme is slow to answer", 0.7),
        turn("banana", 0.1),  # under the cutoff
    ]
    hits = rank_hits(notes, turns, query="What does Acme pay?", limit=5, min_score=0.35)
    assert [(h.memory_id, h.text) for h in hits] == [
        (4, "Acme pays on the 1st"),
        (None, "Acme is slow to answer"),
    ]


def test_a_note_with_the_query_as_its_text_is_still_found() -> None:
    hits = rank_hits([note(1, "door code", 1.0)], [], query="door code", limit=5, min_score=0.3)
    assert [h.memory_id for h in hits] == [1]


def test_the_limit_counts_notes_before_turns() -> None:
    notes = [note(i, f"note {i}", 0.9 - i / 100) for i in range(1, 4)]
    hits = rank_hits(notes, [turn("said", 0.99)], query="q", limit=3, min_score=0.3)
    assert [h.memory_id for h in hits] == [1, 2, 3]


def test_render_is_dated_and_says_when_nothing_is_relevant() -> None:
    recall = Recall([note(4, "Acme pays on the 1st", 0.6), turn("Acme is slow", 0.5)], True)
    assert render_recall("acme", recall, 2.0, NOW).splitlines() == [
        "#4 (11 Nov) Acme pays on the 1st",
        "Said earlier in this chat (not saved):",
        "  Acme is slow",
    ]
    empty = render_recall("x", Recall([], True), 2.0, NOW)
    assert empty == "Nothing relevant about 'x'. /notes lists the newest."
    assert short_date(datetime(2025, 3, 2, tzinfo=UTC), NOW) == "2 Mar 2025"


def test_dates_are_the_operators_day_not_utcs() -> None:
    late = datetime(2026, 11, 10, 23, 30, tzinfo=UTC)  # already the 11th in Berlin
    hit = Hit(7, "notes", Tier.DURABLE, "Acme moved", 0.9, late)
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert render_recall("acme", Recall([hit], True), 2.0, berlin) == "#7 (11 Nov) Acme moved"
    assert render_recall("acme", Recall([hit], True), 2.0, NOW) == "#7 (10 Nov) Acme moved"
    kept = Memory(7, "notes", Tier.DURABLE, "Acme moved", "k", None, late, late, None)
    assert note_line(kept, ZoneInfo("Europe/Berlin")) == "#7 (2026-11-11) Acme moved"
    assert note_line(kept) == "#7 (2026-11-10) Acme moved"


def test_discard_drops_every_turn_holding_the_text() -> None:
    turns = EphemeralMemory()
    turns.add("a", "Initech pays late", NOW)
    turns.add("a", "remember that  initech PAYS late", NOW)
    turns.add("b", "Initech pays late", NOW)
    turns.add("b", "Globex", NOW)
    assert turns.discard("Initech pays late") == 3
    assert [t.text for t in turns.recent("a", NOW)] == []
    assert [t.text for t in turns.recent("b", NOW)] == ["Globex"]
    assert turns.discard("   ") == 0
