"""An inline task's row is written once, already succeeded (issue 11); a run that does
not finish puts it back to queued as an ordinary insert would have stored it."""

from __future__ import annotations

from typing import ClassVar

from agents.base import Agent, AgentResult, TaskContext
from agents.coordinator import Coordinator
from agents.errors import Refusal
from agents.feature import Feature
from agents.intents import Conversation, Intent
from agents.notes import RecallIntent
from agents.registry import Registry
from agents.replies import Reply
from memory.events import EventLog
from memory.store import Store
from memory.tasks import TaskRepo, TaskState

CHAT = Conversation(platform="test", chat_id="c1", user_id="u")


class Answers(Agent):
    """Answers a recall at once, or refuses the query "refuse"; notes each attempt."""

    name: ClassVar[str] = "answers"

    def __init__(self) -> None:
        self.attempts: list[int] = []

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, RecallIntent)
        self.attempts.append(ctx.attempt)
        if intent.query == "refuse":
            raise Refusal("not that")
        return [Reply(text=f"found {intent.query}")]


def coordinator_for(store: Store, events: EventLog, agent: Answers) -> Coordinator:
    feature = Feature(
        name=agent.name,
        build=lambda _: agent,
        intents=(RecallIntent,),
        inline_kinds=frozenset({"recall"}),
    )
    coordinator = Coordinator(store, events, Registry([feature]))
    coordinator.install({agent.name: agent})
    return coordinator


async def warm_up(coordinator: Coordinator) -> None:
    """One task through the ordinary path: after its round the ready queue is known, so
    the next task of an idle lane can run inline."""
    await coordinator.submit(RecallIntent(conversation=CHAT, idempotency_key="w", query="w"))
    await coordinator.wait_idle()


async def _counts_agree(store: Store) -> None:
    kept = {state.value: n for state, n in (await TaskRepo(store).counts()).items() if n}
    rows = await store.fetchall("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
    assert kept == {r["state"]: int(r["n"]) for r in rows}


async def test_an_inline_task_is_written_once_in_its_final_state(
    store: Store, events: EventLog
) -> None:
    agent = Answers()
    async with coordinator_for(store, events, agent) as coordinator:
        await warm_up(coordinator)
        task = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q", query="a")
        )
        await coordinator.wait_idle()
    assert task.state is TaskState.SUCCEEDED and task.attempts == 1
    assert agent.attempts == [1, 1]  # the warm-up's, and this one's
    row = await store.fetchone("SELECT * FROM tasks WHERE id = ?", (task.id,))
    assert row is not None
    assert (row["state"], row["attempts"]) == ("succeeded", 1)
    assert row["updated_at"] == row["created_at"]  # one write: no update after the insert
    started = [e for e in await events.query() if e.kind == "task.started"]
    assert [e.payload["attempt"] for e in started] == [1, 1]
    await _counts_agree(store)


async def test_an_inline_run_that_does_not_finish_is_put_back_and_runs_once_more(
    store: Store, events: EventLog
) -> None:
    agent = Answers()
    async with coordinator_for(store, events, agent) as coordinator:
        await warm_up(coordinator)
        task = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q", query="refuse")
        )
        # As a plain insert would have stored it: queued, no attempt yet.
        assert task.state is TaskState.QUEUED and task.attempts == 0
        await coordinator.wait_idle()
    # The inline try (attempt 1, nothing kept) and the ordinary run (its first attempt).
    assert agent.attempts == [1, 1, 1]  # after the warm-up's
    refused = await TaskRepo(store).get(task.id)
    assert refused is not None and refused.state is TaskState.REFUSED and refused.attempts == 1
    kinds = [e.kind for e in await events.query() if e.subject == f"task:{task.id}"]
    assert kinds == ["task.queued", "task.started", "task.refused"]
    await _counts_agree(store)


async def test_a_rolled_back_inline_task_leaves_no_row_and_no_count(
    store: Store, events: EventLog
) -> None:
    agent = Answers()
    async with coordinator_for(store, events, agent) as coordinator:
        await warm_up(coordinator)
        try:
            async with store.write() as tx:
                await coordinator.enqueue(
                    tx, RecallIntent(conversation=CHAT, idempotency_key="q", query="a")
                )
                raise RuntimeError("the message's transaction fails")
        except RuntimeError:
            pass
        await coordinator.wait_idle()
        again = await coordinator.submit(
            RecallIntent(conversation=CHAT, idempotency_key="q", query="a")
        )
        await coordinator.wait_idle()
    assert again.state is TaskState.SUCCEEDED
    rows = await store.fetchall("SELECT idempotency_key FROM tasks ORDER BY id")
    assert [r["idempotency_key"] for r in rows] == ["w", "q"]
    await _counts_agree(store)
