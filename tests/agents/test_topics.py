"""Binding conversations to features: the pure decisions (which command bound text
stands for, which feature ``/bind x`` names, what ``/bind`` says), the registry's part,
and a brand-new feature that gets binding by declaring it, on the console."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from agents.base import Agent, TaskContext
from agents.errors import ConfigurationError, Refusal
from agents.feature import CommandSpec, Feature
from agents.intents import Conversation, Intent
from agents.registry import build_registry
from agents.replies import Reply
from agents.topics import bindable_list, bound_text, pick_feature, show
from bot.console import ConsoleSender
from bot.inbound import Inbound
from bot.runtime import open_runtime
from bot.topics import apply_binding, binding_place
from config import Settings
from memory.bindings import Binding, Place
from memory.embedder import SentenceTransformerEmbedder
from tests.conftest import Chat

REGISTRY = build_registry()
_NOW = datetime(2026, 11, 2, tzinfo=UTC)
BINDABLE = REGISTRY.bindable


def test_bound_text_is_typed_with_the_command_and_commands_stay_as_they_are() -> None:
    assert (
        bound_text("Acme 1200 EUR October consulting", "invoice")
        == "/invoice Acme 1200 EUR October consulting"
    )
    assert bound_text("  Jane Doe jane@acme.com wants a site\n", "lead") == (
        "/lead Jane Doe jane@acme.com wants a site"
    )
    assert bound_text("/invoices overdue", "invoice") is None
    assert bound_text("  /help", "invoice") is None
    assert bound_text("   ", "invoice") is None


def test_the_registry_says_which_features_bind_and_to_which_command() -> None:
    assert {name: spec.name for name, spec in BINDABLE.items()} == {
        "notes": "remember",
        "invoices": "invoice",
        "reminders": "remind",
        "drafts": "draft",
        "leads": "lead",
    }
    assert all(spec.style in ("text", "optional_text") for spec in BINDABLE.values())
    assert REGISTRY.command("bind") is not None and REGISTRY.command("unbind") is not None


def test_a_binding_to_something_not_a_free_text_command_of_its_own_refuses_to_start() -> None:
    class OddIntent(Intent):
        kind: Literal["odd"] = "odd"

    def feature(bind: str, style: Literal["none", "text"]) -> Feature:
        return Feature(
            name="odd",
            build=lambda ports: None,  # type: ignore[arg-type,return-value]  # never built
            intents=(OddIntent,),
            commands=(CommandSpec("odd", "odd", "odd", "odd", style=style),),
            bind=bind,
        )

    with pytest.raises(ConfigurationError, match="binds to /odd, which is not one of its"):
        build_registry([feature("odd", "none")])
    with pytest.raises(ConfigurationError, match="binds to /remember"):
        build_registry([feature("remember", "text")])
    assert build_registry([feature("odd", "text")]).bindable["odd"].name == "odd"


def test_bind_names_a_feature_or_its_command_and_refuses_the_rest() -> None:
    features = {f.name for f in REGISTRY.features}
    assert pick_feature("invoices", BINDABLE, features) == "invoices"
    assert pick_feature("/Invoice", BINDABLE, features) == "invoices"
    assert pick_feature("LEAD", BINDABLE, features) == "leads"
    with pytest.raises(Refusal) as unknown:
        pick_feature("biling", BINDABLE, features)
    assert str(unknown.value).startswith("There is no feature 'biling' to bind.")
    assert "invoices (/invoice), reminders (/remind)" in str(unknown.value)
    with pytest.raises(Refusal, match=r"^ops has no free-text command to bind to"):
        pick_feature("ops", BINDABLE, features)
    with pytest.raises(Refusal, match=r"can be bound: none\.$"):
        pick_feature("x", {}, features)


def test_what_bind_alone_says() -> None:
    assert show("this topic", None, BINDABLE).startswith(
        "This topic is not bound: plain text here goes to the router. /bind <feature>"
    )
    said = show("this chat", "invoices", BINDABLE)
    assert said.startswith("This chat is bound to invoices: plain text here is read as /invoice")
    assert "/unbind" in said
    # A feature no longer registered (a module removed from SOLOOPS_FEATURES): unbound.
    assert show("this topic", "gone", BINDABLE).startswith("This topic is not bound")
    assert bindable_list({}) == "none"


def test_where_a_binding_holds_and_what_it_makes_of_text() -> None:
    topic = Conversation(platform="telegram", chat_id="-100", user_id="1", thread_id="7")
    assert binding_place(topic) == Place("telegram", "-100", "7")
    dm = Conversation(platform="telegram", chat_id="5", user_id="5")
    assert binding_place(dm) == Place("telegram", "5", None)
    # Slack threads are per command or mention: a binding holds for the whole channel.
    slack = Conversation(platform="slack", chat_id="C1", user_id="U1", thread_id="+thread")
    assert binding_place(slack) == Place("slack", "C1", None)

    bound = Binding(Place("telegram", "-100", "7"), "invoices", "telegram:1", _NOW)
    assert apply_binding("Acme 1 EUR x", bound, REGISTRY) == "/invoice Acme 1 EUR x"
    assert apply_binding("/status", bound, REGISTRY) is None
    assert apply_binding("Acme 1 EUR x", None, REGISTRY) is None
    gone = Binding(bound.place, "gone", "telegram:1", _NOW)
    assert apply_binding("Acme 1 EUR x", gone, REGISTRY) is None


# ---- a brand-new feature gets binding by declaring it ----------------------------


class ShoutIntent(Intent):
    """Say it louder."""

    kind: Literal["shout"] = "shout"
    text: str = Field(min_length=1, max_length=200)


class ShoutAgent(Agent):
    name = "shout"

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        assert isinstance(intent, ShoutIntent)
        return [Reply(text=intent.text.upper() + "!")]


SHOUT = Feature(
    name="shout",
    build=lambda ports: ShoutAgent(),
    intents=(ShoutIntent,),
    commands=(
        CommandSpec(
            "shout",
            "shout",
            "shout <text>",
            "say it louder",
            "/shout hi",
            "text",
            lambda text: {"text": text},
        ),
    ),
    bind="shout",
)


async def test_a_new_feature_binds_by_declaring_it_and_a_plain_chat_binds_whole(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    out = io.StringIO()
    settings = Settings(home=tmp_path / "home", digest={"enabled": False})
    async with open_runtime(
        settings, [ConsoleSender(out)], embedder=embedder, features=[SHOUT]
    ) as runtime:
        chat = Chat(runtime, out)
        said = await chat.say("/bind shout")
        assert said.startswith("This chat is now bound to shout: plain text here is read as")
        assert await chat.say("hello there") == "HELLO THERE!\n"
        assert "shout (/shout)" in await chat.say("/bind")
        assert (await chat.say("/unbind")).startswith("This chat is no longer bound to shout")
        assert (await chat.say("/unbind")).startswith("This chat was not bound")
    async with open_runtime(
        settings, [ConsoleSender(out)], embedder=embedder, features=[SHOUT]
    ) as runtime:
        rows = await runtime.store.fetchall("SELECT * FROM bindings")
        assert rows == []
        events = [e.kind for e in await runtime.events.query() if e.kind.startswith("binding.")]
        assert events == ["binding.set", "binding.removed"]


async def test_on_slack_a_binding_made_by_slash_command_holds_for_mentions_in_the_channel(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(home=tmp_path / "home", digest={"enabled": False})
    async with open_runtime(
        settings,
        [ConsoleSender(io.StringIO())],
        embedder=embedder,
        operators={"slack": frozenset({"U1"})},
    ) as runtime:

        def said(message_id: str, text: str, thread: str | None) -> Inbound:
            return Inbound(
                platform="slack",
                message_id=message_id,
                chat_id="C1",
                user_id="U1",
                thread_id=thread,
                text=text,
                received_at=datetime.now(UTC),
            )

        await runtime.gateway.handle(said("cmd:1", "/bind leads", "+thread"))
        await runtime.coordinator.wait_idle()
        await runtime.gateway.handle(said("ev:2", "Jane Doe jane@acme.com wants a site", "17.1"))
        await runtime.coordinator.wait_idle()
        [bound] = await runtime.events.query(kind="binding.set")
        assert bound.subject == "binding:slack:C1:"
        kinds = await runtime.store.fetchall("SELECT kind FROM tasks ORDER BY id")
        assert [row["kind"] for row in kinds] == ["bind", "lead_chat"]
