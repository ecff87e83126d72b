"""Inline commands (issue 11): a command whose agent answers from memory alone runs to
its reply inside the transaction that records the message, when its conversation's
lane is idle, and keeps every guarantee of the ordinary path."""

from __future__ import annotations

import asyncio
import io
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from agents.base import Agent, AgentResult, TaskContext
from agents.coordinator import Coordinator
from agents.errors import ConfigurationError, Refusal
from agents.feature import Feature
from agents.intents import Conversation, Intent
from agents.notes import RecallIntent, RememberIntent
from agents.registry import Registry
from agents.replies import Reply
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import Settings
from memory.events import EventLog
from memory.outbox import DeliveryState
from memory.store import Store
from memory.tasks import TaskRepo, TaskState
from tests.bot.test_cli import run
from tests.harness.common import NoModel
from tests.harness.inbound import console_inbound
from tests.harness.marker import ROOT, home_env, kill_at_marker


async def test_an_inline_command_commits_message_task_and_reply_together(
    settings: Settings,
) -> None:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()
    ) as runtime:
        await runtime.outbox.stop()  # so what the message's own commit holds is visible
        handled = await runtime.gateway.handle(console_inbound("/help"))
        store = runtime.store
        task = await TaskRepo(store).get(handled.task_id or 0)
        assert task is not None and task.state is TaskState.SUCCEEDED and task.attempts == 1
        rows = await store.fetchall("SELECT state, task_id FROM outbox")
        assert [(r["state"], r["task_id"]) for r in rows] == [("pending", task.id)]
        kinds = [e.kind for e in await runtime.events.query()][-4:]
        assert kinds == ["message.received", "task.queued", "task.started", "task.succeeded"]
        assert out.getvalue() == ""  # stored, not sent: the outbox sends it
        await runtime.outbox.start()
        await runtime.settle()
        assert out.getvalue().count("Send /help <command> for details.") == 1
        counts = await runtime.outbox._repo.counts()  # the stored truth
        assert counts[DeliveryState.SENT] == 1 and counts[DeliveryState.PENDING] == 0


class Lane(Agent):
    """``remember`` waits for its gate; ``recall`` answers at once from nothing stored
    (or refuses, for the query "refuse")."""

    name: ClassVar[str] = "lane"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.answered: list[str] = []

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        if isinstance(intent, RememberIntent):
            self.entered.set()
            await self.gate.wait()
            self.answered.append(intent.text)
            return [Reply(text=f"did {intent.text}")]
        assert isinstance(intent, RecallIntent)
        if intent.query == "refuse":
            raise Refusal("I will not look that up")
        self.answered.append(intent.query)
        return [Reply(text=f"found {intent.query}")]


def lane_coordinator(store: Store, events: EventLog, agent: Lane) -> Coordinator:
    feature = Feature(
        name=agent.name,
        build=lambda _: agent,
        intents=(RememberIntent, RecallIntent),
        inline_kinds=frozenset({"recall"}),
    )
    coordinator = Coordinator(store, events, Registry([feature]))
    coordinator.install({agent.name: agent})
    return coordinator


CHAT = Conversation(platform="test", chat_id="c1", user_id="u")


async def _replies(store: Store) -> list[str]:
    rows = await store.fetchall("SELECT body FROM outbox ORDER BY id")
    return [Reply.from_json(r["body"]).text for r in rows]


async def test_an_inline_command_in_a_busy_lane_waits_its_turn(
    store: Store, events: EventLog
) -> None:
    agent = Lane()
    async with lane_coordinator(store, events, agent) as coordinator:
        await coordinator.submit(RememberIntent(conversation=CHAT, idempotency_key="r", text="a"))
        await asyncio.wait_for(agent.entered.wait(), 30)  # a safety net, not a timing
        behind = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q1", query="b")
        )
        assert behind.state is TaskState.QUEUED  # not run inline: the lane is busy
        assert agent.answered == []
        agent.gate.set()
        await coordinator.wait_idle()
        assert agent.answered == ["a", "b"]
        # The lane is idle now: the next one is answered as it is queued.
        idle = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q2", query="c")
        )
        assert idle.state is TaskState.SUCCEEDED
        await coordinator.wait_idle()
    assert await _replies(store) == ["did a", "found b", "found c"]
    stored = await TaskRepo(store).get(idle.id)
    assert stored is not None and stored.state is TaskState.SUCCEEDED and stored.attempts == 1
    seqs = [(e.seq, e.kind) for e in await events.query() if e.subject == f"task:{idle.id}"]
    assert [kind for _, kind in seqs] == ["task.queued", "task.started", "task.succeeded"]
    assert [seq for seq, _ in seqs] == list(range(seqs[0][0], seqs[0][0] + 3))


async def test_an_inline_kind_that_does_not_just_answer_runs_the_ordinary_way(
    store: Store, events: EventLog
) -> None:
    agent = Lane()
    async with lane_coordinator(store, events, agent) as coordinator:
        task = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q", query="refuse")
        )
        assert task.state is TaskState.QUEUED  # nothing of the inline try was written
        await coordinator.wait_idle()
    refused = await TaskRepo(store).get(task.id)
    assert refused is not None and refused.state is TaskState.REFUSED
    [text] = await _replies(store)
    assert text.startswith("I will not look that up (event #")
    kinds = [e.kind for e in await events.query() if e.subject == f"task:{task.id}"]
    assert kinds == ["task.queued", "task.started", "task.refused"]


def test_an_inline_kind_must_be_one_of_the_features_intents() -> None:
    feature = Feature(
        name="lane",
        build=lambda _: Lane(),
        intents=(RecallIntent,),
        inline_kinds=frozenset({"remember"}),
    )
    with pytest.raises(ConfigurationError, match="'remember'"):
        Registry([feature])


def test_a_kill_while_sending_an_inline_reply_sends_it_once_at_restart(tmp_path: Path) -> None:
    home, marker = tmp_path / "home", tmp_path / "sending"
    kill_at_marker(
        "tests.harness.inline_worker", [str(marker)], home_env(home), marker, "reached the send"
    )
    _the_claimed_reply_is_sent_once_at_restart(home)


def test_a_kill_after_the_commit_of_a_claimed_reply_sends_it_once_at_restart(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    worker = subprocess.run(
        [sys.executable, "-m", "tests.harness.preclaim_worker"],
        cwd=ROOT,
        env=home_env(home),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == -signal.SIGKILL, worker.stderr.decode()
    assert worker.stdout == b""  # no sender was called
    # Claimed in the message's own commit: no claim of its own was needed.
    _the_claimed_reply_is_sent_once_at_restart(home)


def _the_claimed_reply_is_sent_once_at_restart(home: Path) -> None:
    """The /help task succeeded and its reply is claimed (sending); the next start sends
    it exactly once, reclaimed, without running the task again."""
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state FROM tasks").fetchall() == [("succeeded",)]
        assert conn.execute("SELECT state FROM outbox").fetchall() == [("sending",)]
    proc = run(home, "chat")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Send /help <command> for details.") == 1
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state FROM outbox").fetchall() == [("sent",)]
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY seq")]
    assert kinds.count("reply.reclaimed") == 1 and kinds.count("reply.sent") == 1
    assert kinds.count("task.started") == 1  # the task ran once; only the send was redone
