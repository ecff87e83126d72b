"""Intents are validated by their own model, as the discriminated union would, and the
union is built only for what no registered model can take."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.intents import Conversation, dump_intent
from agents.registry import Registry, _stored_kind, build_registry

HOME = Conversation(platform="console", chat_id="c", user_id="u")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry([])


def test_every_intent_writes_its_kind_first(registry: Registry) -> None:
    # load_intent reads the kind from the front of the stored text: true of every model.
    models = [model for feature in registry.features for model in feature.intents]
    assert len(models) > 30
    for model in models:
        assert next(iter(model.model_fields)) == "kind", model.__name__


def test_a_stored_intent_comes_back_equal_without_building_the_union(registry: Registry) -> None:
    fresh = build_registry([])
    intent = fresh.intent("notes", HOME, "k1")
    text = dump_intent(intent)
    assert _stored_kind(text) == "notes"
    assert fresh.load_intent(text) == intent
    assert fresh._union is None  # the per-kind path served both


def test_unknown_or_oddly_written_kinds_go_through_the_union(registry: Registry) -> None:
    with pytest.raises(ValidationError) as made:
        registry.intent("no_such_kind", HOME, "k2")
    assert made.value.errors()[0]["type"] == "union_tag_invalid"
    spaced = dump_intent(registry.intent("help", HOME, "k3")).replace('{"kind":"', '{ "kind": "')
    assert _stored_kind(spaced) == ""
    assert registry.load_intent(spaced).kind == "help"
    with pytest.raises(ValidationError):
        registry.load_intent('{"kind":"no_such_kind"}')


def test_field_errors_name_the_field_as_before(registry: Registry) -> None:
    with pytest.raises(ValidationError) as made:
        registry.intent("help", HOME, "")  # idempotency_key must not be empty
    assert [e["loc"] for e in made.value.errors()] == [("idempotency_key",)]
