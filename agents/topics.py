"""The topics feature: ``/bind <feature>`` makes plain text in this conversation that
feature's command; ``/bind`` shows the binding, ``/unbind`` removes it.

Built for forum topics (a "Billing" topic bound to invoices, where "Acme 1200 EUR
October consulting" is ``/invoice Acme 1200 EUR October consulting``), it binds any
conversation: a topic, a whole chat, a Slack channel (where the front end decides, see
:class:`~agents.binding_port.TopicBindings`). Which features can be bound, and to which
command, comes from the registry: a feature declares ``bind="<command>"``
(:class:`~agents.feature.Feature`). The gateway applies a binding with
:func:`bound_text`; the rest here is the agent and its pure decisions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import Field

from agents.base import Agent, TaskContext
from agents.binding_port import TopicBindings
from agents.errors import ConfigurationError, Refusal
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Reply

NAME = "topics"


class BindIntent(Intent):
    """Bind this conversation to a feature, or (no feature) show its binding."""

    kind: Literal["bind"] = "bind"
    feature: str = Field(default="", max_length=64)


class UnbindIntent(Intent):
    """Remove this conversation's binding."""

    kind: Literal["unbind"] = "unbind"


def bound_text(text: str, command: str) -> str | None:
    """``text`` as typed with ``/command``, in a conversation bound to its feature.

    None leaves the text as it is: a slash command (they keep working in a bound
    topic) or nothing at all.
    """
    stripped = text.strip()
    if not stripped or stripped.startswith("/"):
        return None
    return f"/{command} {stripped}"


def bindable_list(bindable: Mapping[str, CommandSpec]) -> str:
    """``invoices (/invoice), leads (/lead)``: what can be bound, and what text becomes."""
    return ", ".join(f"{name} (/{spec.name})" for name, spec in bindable.items()) or "none"


def pick_feature(word: str, bindable: Mapping[str, CommandSpec], features: Collection[str]) -> str:
    """The feature ``/bind word`` names: a feature's name or its bound command's.

    Raises:
        Refusal: no such feature, or one with no free-text command to bind to.
    """
    wanted = word.strip().lstrip("/").lower()
    for name, spec in bindable.items():
        if wanted in (name, spec.name):
            return name
    example = f" Type /bind {next(iter(bindable))}." if bindable else ""
    if wanted in features:
        raise Refusal(
            f"{wanted} has no free-text command to bind to. Features that can be bound:"
            f" {bindable_list(bindable)}.{example}"
        )
    raise Refusal(
        f"There is no feature {wanted[:40]!r} to bind. Features that can be bound:"
        f" {bindable_list(bindable)}.{example}"
    )


def show(where: str, feature: str | None, bindable: Mapping[str, CommandSpec]) -> str:
    """What ``/bind`` alone says: the binding of ``where`` and how to change it."""
    if feature is None or feature not in bindable:
        return (
            f"{where.capitalize()} is not bound: plain text here goes to the router."
            f" /bind <feature> binds it; features that can be bound: {bindable_list(bindable)}."
        )
    command = bindable[feature].name
    return (
        f"{where.capitalize()} is bound to {feature}: plain text here is read as /{command}"
        f" <text>; slash commands work as usual. /unbind removes the binding;"
        f" /bind <feature> moves it ({bindable_list(bindable)})."
    )


class TopicsAgent(Agent):
    """Binds conversations to features and says what is bound."""

    name = NAME

    def __init__(self, bindings: TopicBindings) -> None:
        self._bindings = bindings

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        conversation = intent.conversation
        where = "this topic" if self._bindings.place(conversation).thread_id else "this chat"
        bindable = self._bindings.bindable
        if isinstance(intent, UnbindIntent):
            removed = await self._bindings.unbind(conversation, conversation.actor)
            if removed is None:
                return [Reply(text=f"{where.capitalize()} was not bound; nothing changed.")]
            return [
                Reply(
                    text=f"{where.capitalize()} is no longer bound to {removed}: plain text"
                    f" goes to the router again. /bind {removed} binds it again."
                )
            ]
        assert isinstance(intent, BindIntent)
        if not intent.feature.strip():
            current = await self._bindings.current(conversation)
            return [Reply(text=show(where, current, bindable))]
        feature = pick_feature(intent.feature, bindable, self._bindings.features)
        if await self._bindings.current(conversation) == feature:
            return [Reply(text=show(where, feature, bindable))]
        previous = await self._bindings.bind(conversation, feature, conversation.actor)
        spec = bindable[feature]
        moved = f" (it was bound to {previous})" if previous else ""
        sample = spec.example.removeprefix(f"/{spec.name} ")
        example = f", e.g. {sample}" if sample and sample != spec.example else ""
        return [
            Reply(
                text=f"{where.capitalize()} is now bound to {feature}{moved}: plain text here is"
                f" read as /{spec.name} <text>{example}. /unbind removes the binding."
            )
        ]


def _bind_args(text: str) -> dict[str, str]:
    words = text.split()
    if len(words) > 1:
        raise ValueError("takes one feature name")
    return {"feature": words[0]} if words else {}


def build(ports: Ports) -> TopicsAgent:
    """The topics agent over the bindings port."""
    if ports.bindings is None:
        raise ConfigurationError(f"feature {ports.name!r} was built without the bindings port")
    return TopicsAgent(ports.bindings)


FEATURE = Feature(
    name=NAME,
    build=build,
    intents=(BindIntent, UnbindIntent),
    commands=(
        CommandSpec(
            "bind",
            "bind",
            "bind [feature]",
            "plain text in this topic goes to a feature; alone: show the binding",
            "/bind invoices",
            "optional_text",
            _bind_args,
        ),
        CommandSpec("unbind", "unbind", "unbind", "plain text here goes to the router again"),
    ),
    # Never held by pause or budgets: they only say where text goes.
    control_kinds=frozenset({"bind", "unbind"}),
)
