"""The coordinator with real SQLite and small agents built on the public Agent contract."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from agents.actions import Action, Propose
from agents.base import Agent, AgentResult, Reroute, TaskContext
from agents.coordinator import Coordinator
from agents.errors import AgentError, ConfigurationError
from agents.feature import Feature
from agents.intents import Conversation, Intent
from agents.lifecycle import AgentState
from agents.notes import RecallIntent, RememberIntent
from agents.registry import Registry
from agents.replies import Reply
from agents.taskrun import short_reason
from memory.events import EventLog
from memory.outbox import OutboxRepo
from memory.store import Store
from memory.tasks import TaskRepo, TaskState


def remember(text: str, chat: str = "c1", key: str | None = None) -> RememberIntent:
    conversation = Conversation(platform="test", chat_id=chat, user_id="u")
    return RememberIntent(
        conversation=conversation, idempotency_key=key or f"{chat}:{text}", text=text
    )


def feature_of(agent: Agent, name: str | None = None) -> Feature:
    """A feature handling ``remember`` whose factory returns ``agent``."""
    return Feature(name=name or agent.name, build=lambda _: agent, intents=(RememberIntent,))


def make(store: Store, events: EventLog, agent: Agent, **options: int) -> Coordinator:
    coordinator = Coordinator(store, events, Registry([feature_of(agent)]), **options)
    coordinator.install({agent.name: agent})
    return coordinator


class Recorder(Agent):
    """Records the order and overlap of the work it is given."""

    name: ClassVar[str] = "recorder"

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.seen: list[str] = []
        self.active = 0
        self.peak = 0

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        assert isinstance(intent, RememberIntent)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            self.seen.append(intent.text)
            if intent.text == "explode":
                raise RuntimeError("the disk is on fire")
            if intent.text == "refuse":
                raise AgentError("I will not do that")
            return [Reply(text=f"did {intent.text}")]
        finally:
            self.active -= 1


async def _replies(store: Store) -> list[str]:
    rows = await store.fetchall("SELECT body FROM outbox ORDER BY id")
    return [Reply.from_json(r["body"]).text for r in rows]


async def test_a_task_row_exists_before_work_starts(store: Store, events: EventLog) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Waiting(Recorder):
        async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
            entered.set()
            await gate.wait()
            return await super().handle(intent, ctx)

    async with make(store, events, Waiting()) as coordinator:
        task = await coordinator.submit(remember("a"))
        await asyncio.wait_for(entered.wait(), 30)  # a safety net, not a timing
        assert (await TaskRepo(store).get(task.id)).state is TaskState.RUNNING  # type: ignore[union-attr]
        gate.set()
        await coordinator.wait_idle()
    done = await TaskRepo(store).get(task.id)
    assert done is not None and done.state is TaskState.SUCCEEDED and done.attempts == 1
    kinds = [e.kind for e in await events.query(kind="task")]
    assert kinds == ["task.queued", "task.started", "task.succeeded"]
    assert await _replies(store) == ["did a"]


async def test_one_conversation_runs_in_order_and_others_run_alongside(
    store: Store, events: EventLog
) -> None:
    agent = Recorder()
    async with make(store, events, agent, concurrency=3) as coordinator:
        for n in range(5):
            await coordinator.submit(remember(f"a{n}", chat="A"))
            await coordinator.submit(remember(f"b{n}", chat="B"))
        await coordinator.wait_idle()
    assert [t for t in agent.seen if t.startswith("a")] == [f"a{n}" for n in range(5)]
    assert [t for t in agent.seen if t.startswith("b")] == [f"b{n}" for n in range(5)]
    assert agent.peak == 2  # two lanes, never two tasks of one lane at once


async def test_concurrency_is_bounded(store: Store, events: EventLog) -> None:
    agent = Recorder(delay=0.05)
    async with make(store, events, agent, concurrency=3) as coordinator:
        for n in range(9):
            await coordinator.submit(remember("x", chat=f"chat{n}", key=f"k{n}"))
        await coordinator.wait_idle()
    assert len(agent.seen) == 9
    assert agent.peak == 3


async def test_same_idempotency_key_makes_one_task(store: Store, events: EventLog) -> None:
    agent = Recorder()
    async with make(store, events, agent) as coordinator:
        first = await coordinator.submit(remember("once", key="same"))
        second = await coordinator.submit(remember("once", key="same"))
        await coordinator.wait_idle()
    assert first.id == second.id
    assert agent.seen == ["once"]


async def test_a_crashing_agent_fails_the_task_with_a_short_reason(
    store: Store, events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        async with make(store, events, Recorder()) as coordinator:
            task = await coordinator.submit(remember("explode"))
            ok = await coordinator.submit(remember("fine"))
            await coordinator.wait_idle()
    failed = await TaskRepo(store).get(task.id)
    assert failed is not None and failed.state is TaskState.FAILED
    assert failed.error == "RuntimeError: the disk is on fire"
    assert (await TaskRepo(store).get(ok.id)).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    [text, fine] = await _replies(store)
    assert text.startswith("Sorry, that failed: RuntimeError: the disk is on fire")
    assert "Traceback" not in text and "Event #" in text
    assert fine == "did fine"
    assert "Traceback" in caplog.text  # the full error goes to the log
    [event] = await events.query(kind="task.failed")
    assert event.payload["error_type"] == "RuntimeError"


async def test_an_agent_refusal_is_said_as_is(store: Store, events: EventLog) -> None:
    async with make(store, events, Recorder()) as coordinator:
        await coordinator.submit(remember("refuse"))
        await coordinator.wait_idle()
    [text] = await _replies(store)
    assert text.startswith("I will not do that (event #")


async def test_stop_requeues_running_work_and_start_resumes_it(tmp_path: Path) -> None:
    started = asyncio.Event()

    class Slow(Recorder):
        async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
            started.set()
            await asyncio.sleep(30)
            raise AssertionError("not reached")

    async with Store.open(tmp_path / "a.db") as store:
        events = EventLog(store)
        coordinator = make(store, events, Slow())
        await coordinator.start()
        task = await coordinator.submit(remember("long"))
        await started.wait()
        await coordinator.stop(grace=0.05)
        assert (await TaskRepo(store).get(task.id)).state is TaskState.QUEUED  # type: ignore[union-attr]
        agent = Recorder()
        async with make(store, events, agent) as again:
            await again.wait_idle()
        resumed = await TaskRepo(store).get(task.id)
        assert resumed is not None and resumed.state is TaskState.SUCCEEDED
        assert resumed.attempts == 2
        assert agent.seen == ["long"]


async def test_a_lane_queued_before_start_runs_through_without_a_nudge(
    store: Store, events: EventLog
) -> None:
    """Tasks queued while soloops was down (or requeued by a crash) are all in the ready
    queue at start: each one's end starts the next, with no wake-up from outside (no
    settle, no new message; the idle re-read is a minute away)."""
    waiting = make(store, events, Recorder())  # not started: it only records the tasks
    async with store.write() as tx:
        for n in range(4):
            await waiting.enqueue(tx, remember(f"q{n}", chat="A"))
    all_done = asyncio.Event()

    class Counting(Recorder):
        async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
            replies = await super().handle(intent, ctx)
            if len(self.seen) == 4:
                all_done.set()
            return replies

    agent = Counting(delay=0)
    async with make(store, events, agent):
        await asyncio.wait_for(all_done.wait(), 30)  # a safety net: the bug took 60 s a task
    assert agent.seen == ["q0", "q1", "q2", "q3"]


async def test_a_guess_held_and_run_again_still_never_acts(store: Store, events: EventLog) -> None:
    """A guessed route that was held (its target paused) and runs later keeps the rule
    of a guess: the target's proposal is refused, nothing reaches the executor."""

    class Guesser(Agent):
        name: ClassVar[str] = "guesser"

        async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
            assert isinstance(intent, RecallIntent)
            routed = RememberIntent(
                conversation=intent.conversation,
                idempotency_key=intent.idempotency_key,
                text=intent.query,
            )
            return Reroute(routed)

    class Poster(Agent):
        name: ClassVar[str] = "poster"

        async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
            return Propose(Action("post", "webhook", "post", {"hook": "x"}, "Post x"))

    guesser, poster = Guesser(), Poster()
    registry = Registry(
        [
            Feature(name="guesser", build=lambda _: guesser, intents=(RecallIntent,)),
            Feature(name="poster", build=lambda _: poster, intents=(RememberIntent,)),
        ]
    )
    coordinator = Coordinator(store, events, registry)
    coordinator.install({"guesser": guesser, "poster": poster})
    async with coordinator:
        async with store.write() as tx:
            await coordinator.lifecycle.set_state(tx, "poster", AgentState.PAUSED, "test", "t")
        conversation = Conversation(platform="test", chat_id="c1", user_id="u")
        task = await coordinator.submit(
            RecallIntent(conversation=conversation, idempotency_key="k1", query="post it")
        )
        await coordinator.wait_idle()
        held = await TaskRepo(store).get(task.id)
        assert held is not None and held.state is TaskState.QUEUED  # held, rerouted
        async with store.write() as tx:
            await coordinator.lifecycle.set_state(tx, "poster", AgentState.RUNNING, "test", "t")
        coordinator.wake()
        await coordinator.wait_idle()
    done = await TaskRepo(store).get(task.id)
    assert done is not None and done.state is TaskState.REFUSED
    assert await store.scalar("SELECT COUNT(*) FROM actions") == 0
    assert any("never acts" in text for text in await _replies(store))


def test_two_agents_cannot_claim_one_kind(store: Store, events: EventLog) -> None:
    with pytest.raises(ConfigurationError, match="claimed by both"):
        Registry([feature_of(Recorder()), feature_of(Recorder(), "other")])


async def test_an_intent_without_agent_is_refused(store: Store, events: EventLog) -> None:
    coordinator = make(store, events, Recorder())
    recall = RecallIntent(
        conversation=Conversation(platform="t", chat_id="c", user_id="u"),
        idempotency_key="k",
        query="x",
    )
    with pytest.raises(ConfigurationError, match="no agent handles"):
        async with store.write() as tx:
            await coordinator.enqueue(tx, recall)
    assert await OutboxRepo(store).counts() is not None


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("a\n  b"), "RuntimeError: a b"),
        (AgentError("plain words"), "plain words"),
        (ValueError(""), "ValueError: no details"),
        (RuntimeError("x" * 500), "RuntimeError: " + "x" * 145 + "…"),
    ],
)
def test_short_reason(exc: BaseException, expected: str) -> None:
    assert short_reason(exc) == expected
