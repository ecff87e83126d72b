"""Features as plug-ins: a new feature declared here and driven end to end, holds that
apply to every way an intent reaches an agent, the start-up check, and refusals."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from agents.actions import Action, Propose
from agents.base import Agent, AgentResult, TaskContext
from agents.errors import ConfigurationError
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.lifecycle import AgentState
from agents.policy import Mode, Rule
from agents.ports import Ports
from agents.registry import build_registry
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import ConfigError, Settings
from memory.embedder import SentenceTransformerEmbedder
from memory.memories import MemoryRepo
from memory.tasks import TaskRepo, TaskState
from tests.agents.test_actions import Run
from tests.conftest import Chat
from tests.emulators.provider import Provider

# ---- a brand-new feature, declared only here --------------------------------------


class PingIntent(Intent):
    """Tell the CRM hook that someone pinged."""

    kind: Literal["ping"] = "ping"
    who: str = Field(min_length=1, max_length=64)


class PingAgent(Agent):
    """Proposes one webhook post per ping."""

    name = "pinger"

    def __init__(self, ports: Ports) -> None:
        self._clock = ports.clock  # what it needs, and nothing more

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, PingIntent)
        return Propose(
            Action(
                name="ping",
                connector="webhook",
                operation="post",
                params={"hook": "crm", "payload": {"ping": intent.who}},
                summary=f"Ping the CRM about {intent.who}",
            )
        )


def _who(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes one name")
    return {"who": tokens[0]}


PINGER = Feature(
    name="pinger",
    build=PingAgent,
    intents=(PingIntent,),
    commands=(
        CommandSpec("ping", "ping", "ping <who>", "ping the CRM", "/ping jane", "tokens", _who),
    ),
    capabilities=frozenset({("webhook", "post")}),
    policies={"ping": Rule(mode=Mode.APPROVE)},
)


def _settings(tmp_path: Path, provider: Provider) -> Settings:
    return Settings(home=tmp_path / "home", hooks={"crm": provider.hook()})


async def test_a_new_feature_runs_end_to_end(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    out = io.StringIO()
    settings = _settings(tmp_path, provider)
    async with open_runtime(
        settings, [ConsoleSender(out)], features=[PINGER], embedder=embedder
    ) as runtime:
        run = Run(Chat(runtime, out))
        assert "/ping <who>" in await run.say("/help")
        card = await run.say("/ping jane")
        assert "Approval needed (pinger)\nPing the CRM about jane" in card
        assert provider.requests == []  # the feature's default policy asks first
        _, (approve, _) = await run.last_card()
        assert await run.press(approve) == "Approved."
        assert [d.json() for d in provider.processed.values()] == [{"ping": "jane"}]
        assert "Done: Ping the CRM about jane" in out.getvalue()
        assert "pinger.ping: approve" in await run.say("/policy")


# ---- holds apply to typed commands and routed free text alike ---------------------


@pytest.fixture
async def chat(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> AsyncIterator[Chat]:
    out = io.StringIO()
    settings = Settings(home=tmp_path / "home")
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        yield Chat(runtime, out)


async def _notes(chat: Chat) -> int:
    return await MemoryRepo(chat.runtime.store).count("notes")


async def _hold(chat: Chat, how: str) -> None:
    if how == "pause":
        assert "notes is paused" in await chat.say("/pause notes")
        return
    lifecycle = chat.runtime.coordinator.lifecycle
    state, reason = {
        "budget": (AgentState.PAUSED, "budget: 5 of 5 actions used today"),
        "degraded": (AgentState.DEGRADED, "repeated failures"),
    }[how]
    async with chat.runtime.store.write() as tx:  # as the failure path and supervisor do
        await lifecycle.set_state(tx, "notes", state, reason, how)


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("pause", "The notes agent is paused, so this waits. /resume notes releases it."),
        ("budget", "The notes agent reached its daily budget, so this waits."),
        ("degraded", "The notes agent is degraded (it failed several times in a row)"),
    ],
)
async def test_held_work_is_said_and_runs_after_resume(chat: Chat, how: str, says: str) -> None:
    await _hold(chat, how)
    typed = await chat.say("/remember the gate code is 4321")
    assert says in typed and "releases it" in typed
    routed = await chat.say("remember that the door code is 1234")
    assert says in routed
    assert await _notes(chat) == 0  # neither way reached the notes agent
    held = await chat.runtime.events.query(kind="task.held")
    assert len(held) == 2
    # One task per message, the routed one re-targeted in place.
    rows = await chat.runtime.store.fetchall("SELECT kind, agent, state FROM tasks ORDER BY id")
    assert [tuple(r) for r in rows][-2:] == [
        ("remember", "notes", "queued"),
        ("remember", "notes", "queued"),
    ]
    assert len(await chat.runtime.events.query(kind="task.rerouted")) == 1
    resumed = await chat.say("/resume notes")
    await chat.runtime.settle()
    assert "running again" in resumed
    assert await _notes(chat) == 2
    text = chat.out.getvalue()
    assert "Remembered #1." in text and "Remembered #2." in text
    assert text.count(says) == 2  # once per held task


# ---- the start-up check -----------------------------------------------------------


def test_an_unknown_connector_capability_is_refused() -> None:
    sms = Feature(
        name="texter",
        build=PingAgent,
        capabilities=frozenset({("sms", "send")}),
    )
    registry = build_registry([sms])
    with pytest.raises(ConfigurationError) as caught:
        registry.check_connectors({"webhook": frozenset({"post"})})
    message = str(caught.value)
    assert "feature 'texter'" in message and "connector 'sms'" in message
    assert "connectors: webhook" in message


def test_a_colliding_command_is_refused_naming_both() -> None:
    clash = Feature(
        name="jotter",
        build=PingAgent,
        intents=(PingIntent,),
        commands=(CommandSpec("remember", "ping", "remember <who>", "clash", "", "tokens", _who),),
    )
    with pytest.raises(ConfigurationError) as caught:
        build_registry([clash])
    assert str(caught.value) == ("feature 'jotter' command /remember collides with feature 'notes'")


def test_a_command_without_an_agent_is_refused() -> None:
    orphan = Feature(
        name="orphan",
        build=PingAgent,
        commands=(CommandSpec("orphan", "nobody", "orphan", "no agent"),),
    )
    with pytest.raises(ConfigurationError, match="which no feature's agent handles"):
        build_registry([orphan])


async def test_open_runtime_refuses_before_starting(tmp_path: Path) -> None:
    sms = Feature(name="texter", build=PingAgent, capabilities=frozenset({("sms", "send")}))
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(ConfigError, match=r"feature 'texter' capability sms\.send"):
        async with open_runtime(settings, features=[sms]):
            raise AssertionError("not reached")
    assert not settings.database_path.exists()  # refused before anything was opened


def test_the_cli_prints_the_refusal_without_a_traceback(tmp_path: Path) -> None:
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "clash.py").write_text(
        "from agents.feature import CommandSpec, Feature\n"
        "FEATURE = Feature(name='clash', build=lambda ports: None,\n"
        "    commands=(CommandSpec('remember', 'remember', 'remember', 'x'),))\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")},
        "SOLOOPS_HOME": str(tmp_path / "home"),
        "SOLOOPS_FEATURES": '["clash"]',
        "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat"],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "feature 'clash' command /remember collides with feature 'notes'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# ---- an operator's mistake is a refusal, not a failure ----------------------------


async def test_a_user_mistake_is_a_refusal(chat: Chat) -> None:
    for _ in range(4):
        said = await chat.say("/forget 99999")
        assert "There is no note #99999. /notes lists them." in said
    counts = await TaskRepo(chat.runtime.store).counts()
    assert counts[TaskState.REFUSED] == 4 and counts[TaskState.FAILED] == 0
    assert len(await chat.runtime.events.query(kind="task.refused")) == 4
    assert await chat.runtime.events.query(kind="task.failed") == []
    assert "notes: running; last run" in (agents := await chat.say("/agents"))
    assert "notes: running" in agents and "0 failed in 24 h" in agents.split("notes:")[1]
    assert not await chat.runtime.coordinator.lifecycle.failing_streak("notes")
    assert "Remembered #1." in await chat.say("/remember still fine")
