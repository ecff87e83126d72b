"""The operator's controls over the coordinator: policies, agents, dead letters, undo.

Used by the ops agent; each function takes the running coordinator and returns what to
say, so the ops agent stays a thin router.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from agents.actions import Propose
from agents.errors import AgentError
from agents.executor import compensation_of
from agents.intents import Conversation
from agents.lifecycle import AgentState
from agents.policy import POLICY_USAGE, PolicyError, effective_rule, parse_change
from agents.replies import Reply
from memory.actions import ActionRepo, ActionState
from memory.tasks import TaskRepo, TaskState

if TYPE_CHECKING:
    from agents.coordinator import Coordinator


async def policies(coordinator: Coordinator, words: tuple[str, ...], actor: str) -> Reply:
    """``/policy``: list rules, show one, or change one."""
    executor = coordinator.executor
    base, overrides = await executor.rules()
    if not words:
        keys = sorted({*base, *overrides} - {"*"})
        lines = ["Policies (changes made in chat are marked *):"]
        lines.append(f"  default: {effective_rule('*', base, {}).describe()}")
        lines += [
            f"  {key}: {effective_rule(key, base, overrides).describe()}"
            + (" *" if key in overrides else "")
            for key in keys
        ]
        lines.append(f"Change one: /{POLICY_USAGE}")
        return Reply(text="\n".join(lines))
    if len(words) == 1:
        key = words[0].lower()
        return Reply(text=f"{key}: {effective_rule(key, base, overrides).describe()}")
    current = effective_rule(words[0].lower(), base, overrides)
    try:
        key, rule = parse_change(list(words), current)
    except PolicyError as exc:
        raise AgentError(str(exc)) from None
    now_in_force = await executor.set_rule(key, rule, actor)
    return Reply(text=f"{key}: {now_in_force.describe()}")


async def agents_table(coordinator: Coordinator) -> Reply:
    """``/agents``: state, last run, failures in 24 h, budget use."""
    tasks = TaskRepo(coordinator.store)
    now = coordinator.now()
    lines = []
    for name in sorted({agent.name for agent in coordinator.agents.values()}):
        state = coordinator.lifecycle.state(name)
        last, failed = await tasks.agent_stats(name, now - timedelta(hours=24))
        use = await coordinator.lifecycle.budget_use(name)
        last_text = f"{last:%Y-%m-%d %H:%M}" if last else "never"
        lines.append(
            f"{name}: {state.value}; last run {last_text}; {failed} failed in 24 h;"
            f" {use.actions}/{use.action_limit} actions today,"
            f" spend {use.spend:.2f}/{use.spend_limit:.2f}"
        )
    return Reply(text="\n".join(lines))


async def set_agent_state(
    coordinator: Coordinator, agent: str, state: AgentState, actor: str
) -> Reply:
    """``/pause`` and ``/resume``."""
    known = {a.name for a in coordinator.agents.values()}
    if agent not in known:
        raise AgentError(f"There is no agent {agent!r}. Agents: {', '.join(sorted(known))}")
    reason = f"{'paused' if state is AgentState.PAUSED else 'resumed'} by {actor}"
    async with coordinator.store.write() as tx:
        changed = await coordinator.lifecycle.set_state(tx, agent, state, reason, actor)
    coordinator.wake()
    if not changed:
        return Reply(text=f"{agent} is already {state.value}.")
    if state is AgentState.RUNNING:
        return Reply(text=f"{agent} is running again; its held work resumes now.")
    return Reply(text=f"{agent} is paused: its new work waits until /resume {agent}.")


async def failed(coordinator: Coordinator, conversation: Conversation) -> Reply:
    """``/failed``: dead letters, with their cards shown again."""
    dead = await TaskRepo(coordinator.store).in_state(TaskState.DEAD, limit=50)
    if not dead:
        return Reply(
            text="No failed actions. Everything that ran either succeeded or was discarded."
        )
    desk = coordinator.approvals
    cards = [
        *await desk.repo.pending_for("dead_letter"),
        *await desk.repo.pending_for("reconcile"),
    ]
    async with coordinator.store.write() as tx:
        for card in cards:
            await desk.resend(tx, card, conversation)
    lines = [f"{len(dead)} failed task(s); their cards are above:"]
    lines += [f"task {t.id} ({t.kind}): {t.error or 'no reason recorded'}" for t in dead[:20]]
    return Reply(text="\n".join(lines))


async def undo(coordinator: Coordinator, event: int | None) -> Propose | Reply:
    """``/undo [event]``: propose the compensation of a reversible action."""
    actions = ActionRepo(coordinator.store)
    if event is None:
        row = await actions.last_undoable()
        if row is None:
            raise AgentError("Nothing to undo: no action has succeeded since the last undo.")
    else:
        match = await coordinator.events.get(event)
        if match is None or match.kind != "action.succeeded":
            raise AgentError(f"Event #{event} is not a succeeded action. /events shows them.")
        row = await actions.get(int(match.subject.split(":", 1)[1]))
        if row is None or row.state is not ActionState.SUCCEEDED:
            raise AgentError(f"Event #{event}'s action cannot be undone now.")
    compensation = compensation_of(row)
    if compensation is None:
        return Reply(text=f"'{row.summary}' is irreversible: soloops has no way to undo it.")
    return Propose(compensation, undo_of=row.id)
