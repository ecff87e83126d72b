"""The operator's controls: policies, agents, dead letters, undo.

Used by the ops agent; each function takes the narrow ports it needs (never the
coordinator) and returns what to say.
"""

from __future__ import annotations

from datetime import timedelta

from agents.actions import Propose, compensation_of
from agents.errors import Refusal
from agents.intents import Conversation
from agents.lifecycle import AgentState
from agents.ops_render import StatusFacts
from agents.policy import (
    POLICY_USAGE,
    PolicyError,
    effective_rule,
    explain,
    inapplicable,
    parse_change,
)
from agents.ports import ApprovalsView, LifecycleControl, Reports
from agents.replies import Reply
from memory.actions import ActionState
from memory.clock import Clock
from memory.semantic import IndexState


async def policies(control: LifecycleControl, words: tuple[str, ...], actor: str) -> Reply:
    """``/policy``: list rules, show one, or change one."""
    base, overrides = await control.rules()
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
    key = words[0].lower()
    known = sorted(set(base) - {"*"})
    agent, _, action = key.partition(".")
    note = ""
    if key not in known:
        if agent not in control.agents:
            raise Refusal(
                f"There is no agent {agent!r}. Policies are <agent>.<action>; the agents:"
                f" {', '.join(control.agents)}; declared policies: {', '.join(known) or 'none'}."
            )
        declared = [k for k in known if k.startswith(f"{agent}.")]
        # Undo and compensations propose actions no feature declares up front, so an
        # undeclared action of a real agent is accepted, with a word in case of a typo.
        note = (
            f"\n(Note: {agent} declares no action {action!r}"
            + (f"; its declared ones: {', '.join(declared)}" if declared else "")
            + ". The rule applies if it ever proposes one.)"
        )
    if len(words) == 1:
        return Reply(text=explain(key, effective_rule(key, base, overrides)) + note)
    current = effective_rule(key, base, overrides)
    try:
        key, rule = parse_change(list(words), current)
    except PolicyError as exc:
        raise Refusal(str(exc)) from None
    measures = base[key].measures if key in base else None
    if rule is not None and (problem := inapplicable(key, rule, measures)):
        raise Refusal(f"{problem}. Nothing was changed.")
    now_in_force = await control.set_rule(key, rule, actor)
    return Reply(text=explain(key, now_in_force) + note)


async def agents_table(control: LifecycleControl, reports: Reports, clock: Clock) -> Reply:
    """``/agents``: state, last run, failures in 24 h, budget use."""
    now = clock.now()
    lines = []
    for name in control.agents:
        state = control.state(name)
        last, failed = await reports.agent_stats(name, now - timedelta(hours=24))
        use = await control.budget_use(name)
        last_text = f"{last:%Y-%m-%d %H:%M}" if last else "never"
        lines.append(
            f"{name}: {state.value}; last run {last_text}; {failed} failed in 24 h;"
            f" {use.actions}/{use.action_limit} actions today,"
            f" spend {use.spend:.2f}/{use.spend_limit:.2f}"
        )
    return Reply(text="\n".join(lines))


async def set_agent_state(
    control: LifecycleControl, agent: str, state: AgentState, actor: str
) -> Reply:
    """``/pause`` and ``/resume``."""
    if agent not in control.agents:
        known = ", ".join(control.agents)
        raise Refusal(f"There is no agent {agent!r}. Agents: {known}")
    reason = f"{'paused' if state is AgentState.PAUSED else 'resumed'} by {actor}"
    if not await control.set_state(agent, state, reason, actor):
        return Reply(text=f"{agent} is already {state.value}.")
    if state is AgentState.RUNNING:
        return Reply(text=f"{agent} is running again; its held work resumes now.")
    return Reply(text=f"{agent} is paused: its new work waits until /resume {agent}.")


async def failed(reports: Reports, approvals: ApprovalsView, conversation: Conversation) -> Reply:
    """``/failed``: dead letters, with their cards shown again."""
    dead = await reports.dead_tasks(limit=50)
    if not dead:
        return Reply(
            text="No failed actions. Everything that ran either succeeded or was discarded."
        )
    await approvals.show_again(await approvals.pending("dead_letter", "reconcile"), conversation)
    lines = [f"{len(dead)} failed task(s); their cards are above:"]
    lines += [f"task {t.id} ({t.kind}): {t.error or 'no reason recorded'}" for t in dead[:20]]
    return Reply(text="\n".join(lines))


async def undo(reports: Reports, event: int | None) -> Propose | Reply:
    """``/undo [event]``: propose the compensation of a reversible action."""
    if event is None:
        row = await reports.last_undoable_action()
        if row is None:
            raise Refusal("Nothing to undo: no action has succeeded since the last undo.")
    else:
        match = await reports.event(event)
        if match is None or match.kind != "action.succeeded":
            raise Refusal(f"Event #{event} is not a succeeded action. /events shows them.")
        row = await reports.action(int(match.subject.split(":", 1)[1]))
        if row is None or row.state is not ActionState.SUCCEEDED:
            raise Refusal(f"Event #{event}'s action cannot be undone now.")
    compensation = compensation_of(row)
    if compensation is None:
        return Reply(text=f"'{row.summary}' is irreversible: soloops has no way to undo it.")
    return Propose(compensation, undo_of=row.id)


async def status_facts(
    reports: Reports,
    approvals: ApprovalsView,
    control: LifecycleControl,
    memory: IndexState | None = None,
) -> StatusFacts:
    """Everything ``/status`` reports (``memory``: the memory index's state)."""
    return StatusFacts(
        memory="" if memory is None or memory.phase == "ready" else memory.describe(),
        tasks=await reports.task_counts(),
        deliveries=await reports.delivery_counts(),
        notes=await reports.memory_count("notes"),
        last_event=await reports.last_event(),
        pending_cards=len(await approvals.pending()),
        breakers={k: v.value for k, v in control.breaker_states().items()},
        agents={name: control.state(name).value for name in control.agents},
    )


async def pending(approvals: ApprovalsView, conversation: Conversation) -> Reply:
    """``/pending``: the cards waiting, shown again."""
    waiting = await approvals.pending()
    if not waiting:
        return Reply(text="Nothing is waiting for your approval.")
    await approvals.show_again(waiting, conversation)
    return Reply(text=f"{len(waiting)} approval(s) waiting; their cards are above.")
