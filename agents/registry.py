"""The registry: assembles the registered features and checks them at start.

From the features it builds the intent union (a pydantic ``TypeAdapter`` over a
discriminated union made at runtime from every feature's intent models), the command
catalogue the grammar parses and /help shows, the router's phrasings, the default
policies, the runbook hints and the control kinds. Anything wired wrongly is a
:class:`~agents.errors.ConfigurationError` naming both sides, raised before anything
runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import reduce
from operator import or_
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from agents import (
    digest,
    drafts,
    followups,
    invoices,
    leads,
    notes,
    ops,
    reminders,
    router,
    schedule_cmd,
    topics,
    voice,
)
from agents.errors import ConfigurationError
from agents.feature import CommandSpec, Feature, Phrasings
from agents.intents import Conversation, Intent, kind_of
from agents.policy import Rule

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class Registry:
    """The features soloops runs with, checked for collisions when built."""

    def __init__(self, features: Sequence[Feature]) -> None:
        self._features: dict[str, Feature] = {}
        self._by_kind: dict[str, Feature] = {}
        self._models: dict[str, type[Intent]] = {}
        self._commands: dict[str, tuple[CommandSpec, Feature]] = {}
        for feature in features:
            self._add(feature)
        self._check_commands()
        self._union: TypeAdapter[Intent] | None = None

    def _adapter(self) -> TypeAdapter[Intent]:
        """The discriminated union of every registered intent, for kinds not registered.

        Built on first need: building it builds every intent model's validator (tens of
        ms at start-up), while a known kind is validated by its own model, which is
        what the union would pick by ``kind``, with the same errors per field.
        """
        if self._union is None:
            models = tuple(self._models.values())
            union: Any = reduce(or_, models) if models else Intent
            # Built at runtime from the registered models; the static type is their base.
            shape: Any = Annotated[union, Field(discriminator="kind")] if len(models) > 1 else union
            self._union = TypeAdapter(shape)
        return self._union

    def _add(self, feature: Feature) -> None:
        if not _NAME.match(feature.name):
            raise ConfigurationError(
                f"feature {feature.name!r}: a name is lower-case letters, digits and _"
            )
        if feature.name in self._features:
            raise ConfigurationError(f"feature {feature.name!r} is registered twice")
        self._features[feature.name] = feature
        for model in feature.intents:
            try:
                kind = kind_of(model)
            except TypeError as exc:
                raise ConfigurationError(f"feature {feature.name!r}: {exc}") from None
            other = self._by_kind.get(kind)
            if other is not None:
                raise ConfigurationError(
                    f"feature {feature.name!r} intent kind {kind!r} is claimed by both"
                    f" feature {other.name!r} and feature {feature.name!r}"
                )
            self._by_kind[kind] = feature
            self._models[kind] = model
        for command in feature.commands:
            owner = self._commands.get(command.name)
            if owner is not None:
                raise ConfigurationError(
                    f"feature {feature.name!r} command /{command.name} collides with"
                    f" feature {owner[1].name!r}"
                )
            self._commands[command.name] = (command, feature)
        if feature.bind is not None:
            spec = next((c for c in feature.commands if c.name == feature.bind), None)
            if spec is None or spec.style not in ("text", "optional_text"):
                raise ConfigurationError(
                    f"feature {feature.name!r} binds to /{feature.bind}, which is not one of its"
                    " commands taking free text"
                )
        if not feature.shared_memory <= feature.namespaces:
            raise ConfigurationError(
                f"feature {feature.name!r} shares memory namespaces it does not declare:"
                f" {', '.join(sorted(feature.shared_memory - feature.namespaces))}"
            )
        for kind in [*feature.phrasings, *feature.control_kinds, *feature.inline_kinds]:
            if kind not in feature.kinds:
                raise ConfigurationError(
                    f"feature {feature.name!r} names kind {kind!r}, which is not one of its"
                    f" intents ({', '.join(sorted(feature.kinds)) or 'none'})"
                )

    def _check_commands(self) -> None:
        for command, feature in self._commands.values():
            owner = self._by_kind.get(command.kind)
            if owner is None:
                raise ConfigurationError(
                    f"feature {feature.name!r} command /{command.name} builds kind"
                    f" {command.kind!r}, which no feature's agent handles"
                )
            if owner is not feature:
                raise ConfigurationError(
                    f"feature {feature.name!r} command /{command.name} builds kind"
                    f" {command.kind!r}, which belongs to feature {owner.name!r}"
                )

    def check_connectors(self, offered: Mapping[str, frozenset[str]]) -> None:
        """Refuse a capability naming a connector (or an operation) that is not there."""
        for feature in self._features.values():
            for connector, operation in sorted(feature.capabilities):
                operations = offered.get(connector)
                if operations is None and connector in feature.optional_connectors:
                    continue  # the feature refuses in chat, naming the settings to set
                if operations is None:
                    known = ", ".join(sorted(offered)) or "none"
                    raise ConfigurationError(
                        f"feature {feature.name!r} capability {connector}.{operation} names"
                        f" connector {connector!r}, which is not configured (connectors: {known})"
                    )
                if operation not in operations:
                    raise ConfigurationError(
                        f"feature {feature.name!r} capability {connector}.{operation}: connector"
                        f" {connector!r} has no operation {operation!r}"
                        f" (it has: {', '.join(sorted(operations))})"
                    )

    # ---- what the rest of soloops reads -------------------------------------------

    @property
    def features(self) -> tuple[Feature, ...]:
        return tuple(self._features.values())

    def feature(self, name: str) -> Feature | None:
        """The feature called ``name`` (its agent's name)."""
        return self._features.get(name)

    def feature_for(self, kind: str) -> Feature | None:
        """The feature whose agent handles ``kind``."""
        return self._by_kind.get(kind)

    @property
    def catalog(self) -> tuple[CommandSpec, ...]:
        """Every command, in registration order (what /help and the menus show)."""
        return tuple(command for command, _ in self._commands.values())

    def command(self, name: str) -> CommandSpec | None:
        return entry[0] if (entry := self._commands.get(name)) else None

    @property
    def bindable(self) -> dict[str, CommandSpec]:
        """The command plain text stands for in a conversation bound to a feature, by
        feature name (``/bind``), in registration order."""
        return {
            f.name: spec
            for f in self._features.values()
            if f.bind is not None
            for spec in f.commands
            if spec.name == f.bind
        }

    @property
    def phrasings(self) -> dict[str, Phrasings]:
        """The router's phrasings, by intent kind."""
        return {kind: ph for f in self._features.values() for kind, ph in f.phrasings.items()}

    @property
    def policies(self) -> dict[str, Rule]:
        """Default rules, keyed ``<feature>.<action>``."""
        return {
            f"{f.name}.{action}": rule
            for f in self._features.values()
            for action, rule in f.policies.items()
        }

    @property
    def shared_memory(self) -> tuple[str, ...]:
        """Namespaces features share with /recall (read only), in registration order."""
        return tuple(ns for f in self._features.values() for ns in sorted(f.shared_memory))

    @property
    def hints(self) -> dict[tuple[str, str], str]:
        """Runbook hints per (connector, failure kind)."""
        return {key: text for f in self._features.values() for key, text in f.hints.items()}

    @property
    def control_kinds(self) -> frozenset[str]:
        """Kinds that pause, degradation and budgets never hold."""
        return frozenset().union(*(f.control_kinds for f in self._features.values()))

    @property
    def inline_kinds(self) -> frozenset[str]:
        """Kinds whose agent answers from memory alone: run inside the message's own
        transaction when their lane is idle (``Feature.inline_kinds``)."""
        return frozenset().union(*(f.inline_kinds for f in self._features.values()))

    def capabilities(self, agent: str) -> frozenset[tuple[str, str]]:
        """The (connector, operation) pairs ``agent``'s actions may use."""
        feature = self._features.get(agent)
        return feature.capabilities if feature else frozenset()

    def intent(self, kind: str, conversation: Conversation, key: str, **fields: Any) -> Intent:
        """Build and validate an intent of ``kind`` (raises pydantic's ValidationError)."""
        data = {"kind": kind, "conversation": conversation, "idempotency_key": key, **fields}
        model = self._models.get(kind)
        if model is None or "kind" in fields:
            return self._adapter().validate_python(data)
        return model.model_validate(data)

    def load_intent(self, text: str) -> Intent:
        """Rebuild an intent stored by :func:`agents.intents.dump_intent`."""
        model = self._models.get(_stored_kind(text))
        if model is None:
            return self._adapter().validate_json(text)
        return model.model_validate_json(text)


_KIND_PREFIX = '{"kind":"'


def _stored_kind(text: str) -> str:
    """The kind ``dump_intent`` wrote first in ``text``; "" if it is not written so.

    A string peek, not a JSON parse: ``kind`` is the first field of every intent.
    Anything else ("" here) goes through the union, which reads the whole text.
    """
    if not text.startswith(_KIND_PREFIX):
        return ""
    end = text.find('"', len(_KIND_PREFIX))
    kind = text[len(_KIND_PREFIX) : end] if end > 0 else ""
    return "" if "\\" in kind else kind


def default_features() -> list[Feature]:
    """The features every soloops runs (the free-text router routes among them)."""
    return [
        ops.FEATURE,
        notes.FEATURE,
        digest.FEATURE,
        schedule_cmd.FEATURE,
        invoices.FEATURE,
        reminders.FEATURE,
        drafts.FEATURE,
        leads.FEATURE,
        followups.FEATURE,
        voice.FEATURE,
        topics.FEATURE,
        router.FEATURE,
    ]


def build_registry(extra: Iterable[Feature] = (), *, defaults: bool = True) -> Registry:
    """A registry of the default features (unless ``defaults`` is False) plus ``extra``.

    Raises :class:`~agents.errors.ConfigurationError` on a collision.
    """
    return Registry([*(default_features() if defaults else []), *extra])
