"""The ops feature: /help, /status, /events, approvals, hooks, policies, agents, undo.

The operator's own controls. Its agent gets the lifecycle control port
(``operator_controls``); most of its kinds are control kinds, never held, so the
operator can always see what is going on and get an agent going again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from agents import ops_controls as controls
from agents.actions import Action, Propose
from agents.approvals import DecisionStatus
from agents.base import Agent, AgentResult, NeedsApproval, TaskContext
from agents.errors import Refusal
from agents.feature import CommandSpec, Feature, Phrasings, limit_arg
from agents.intents import Intent
from agents.lifecycle import AgentState
from agents.ops_render import render_event, render_help, render_status
from agents.policy import Mode, Rule
from agents.ports import ApprovalsView, LifecycleControl, Ports, Reports
from agents.replies import Reply
from memory.clock import Clock
from memory.semantic import MemorySpace

NAMESPACE = "ops"
HELP_CACHE = 256  # /help texts kept rendered (topics are operator input: bounded)


class HelpIntent(Intent):
    """Show the commands, or the usage of one."""

    kind: Literal["help"] = "help"
    topic: str | None = None


class StatusIntent(Intent):
    """Show how soloops is doing."""

    kind: Literal["status"] = "status"


class EventsIntent(Intent):
    """Show the newest events."""

    kind: Literal["events"] = "events"
    limit: int = Field(default=10, ge=1, le=50)


class ConfirmIntent(Intent):
    """Ask the operator to confirm something, with an approval card."""

    kind: Literal["confirm"] = "confirm"
    text: str = Field(min_length=1, max_length=2000)


class PendingIntent(Intent):
    """List approvals still waiting, with their buttons."""

    kind: Literal["pending"] = "pending"


class DecideIntent(Intent):
    """Approve or reject by the short code a card shows (the gateway applies it)."""

    kind: Literal["decide"] = "decide"
    code: str = Field(min_length=4, max_length=16)
    decision: Literal["approve", "reject"]


class EditIntent(Intent):
    """Replace the editable text of a pending card's action: ``/edit CODE new text``."""

    kind: Literal["edit"] = "edit"
    code: str = Field(min_length=4, max_length=16)
    text: str = Field(min_length=1, max_length=20000)


class HookIntent(Intent):
    """Post to a named outbound webhook (``name`` None: list the hooks)."""

    kind: Literal["hook"] = "hook"
    name: str | None = Field(default=None, max_length=64)
    text: str = Field(default="", max_length=8000)


class PolicyIntent(Intent):
    """Show or change policies: ``/policy [<agent.action> <change...>]``."""

    kind: Literal["policy"] = "policy"
    words: tuple[str, ...] = ()


class AgentsIntent(Intent):
    """List agents with state, last run, failures and budget use."""

    kind: Literal["agents"] = "agents"


class PauseIntent(Intent):
    """Hold an agent's work until it is resumed."""

    kind: Literal["pause"] = "pause"
    agent: str = Field(min_length=1, max_length=64)


class ResumeIntent(Intent):
    """Let a paused or degraded agent work again."""

    kind: Literal["resume"] = "resume"
    agent: str = Field(min_length=1, max_length=64)


class UndoIntent(Intent):
    """Undo the last reversible action, or the one an event names."""

    kind: Literal["undo"] = "undo"
    event: int | None = Field(default=None, ge=1)


class FailedIntent(Intent):
    """List dead letters with their Retry / Discard buttons."""

    kind: Literal["failed"] = "failed"


class OpsAgent(Agent):
    """Answers questions about soloops itself and gives the operator its controls."""

    name = "ops"

    def __init__(
        self,
        catalog: Sequence[CommandSpec],
        reports: Reports,
        approvals: ApprovalsView,
        control: LifecycleControl,
        clock: Clock,
        hooks: Sequence[str] = (),
        memory: MemorySpace | None = None,
    ) -> None:
        self._catalog = list(catalog)
        self._memory = memory
        self._reports = reports
        self._approvals = approvals
        self._control = control
        self._clock = clock
        self._started_at = clock.now()
        self._hooks = tuple(sorted(hooks))
        self._help: dict[str | None, str] = {}  # the catalogue is fixed: render each once

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        actor = intent.conversation.actor
        match intent:
            case HelpIntent(topic=topic):
                text = self._help.get(topic)
                if text is None:
                    text = render_help(self._catalog, topic)
                    if len(self._help) < HELP_CACHE:
                        self._help[topic] = text
                return [Reply(text=text)]
            case StatusIntent():
                facts = await controls.status_facts(
                    self._reports,
                    self._approvals,
                    self._control,
                    None if self._memory is None else self._memory.index_state,
                )
                text = render_status(facts, self._started_at, self._clock.now())
                return [Reply(text=text)]
            case EventsIntent(limit=limit):
                events = await self._reports.newest_events(limit)
                if not events:
                    return [Reply(text="No events yet.")]
                return [Reply(text="\n".join(render_event(event) for event in events))]
            case ConfirmIntent(text=text):
                return await self._confirm(text, ctx)
            case PendingIntent():
                return [await controls.pending(self._approvals, intent.conversation)]
            case EditIntent(code=code, text=text):
                edited = await self._approvals.edit(code, text, actor)
                if edited.status is not DecisionStatus.APPLIED:
                    raise Refusal(edited.message)
                return [Reply(text=edited.message)]
            case HookIntent(name=name, text=text):
                return self._hook(name, text, actor)
            case PolicyIntent(words=words):
                return [await controls.policies(self._control, words, actor)]
            case AgentsIntent():
                return [await controls.agents_table(self._control, self._reports, self._clock)]
            case PauseIntent(agent=agent):
                paused = AgentState.PAUSED
                return [await controls.set_agent_state(self._control, agent, paused, actor)]
            case ResumeIntent(agent=agent):
                running = AgentState.RUNNING
                return [await controls.set_agent_state(self._control, agent, running, actor)]
            case UndoIntent(event=event):
                result = await controls.undo(self._reports, event)
                return [result] if isinstance(result, Reply) else result
            case FailedIntent():
                conversation = intent.conversation
                return [await controls.failed(self._reports, self._approvals, conversation)]
        raise AssertionError(f"ops got an intent it does not handle: {intent.kind}")

    def _hook(self, name: str | None, text: str, actor: str) -> AgentResult:
        if not self._hooks:
            return [
                Reply(
                    text=(
                        "No hooks are configured. Add one: a [hooks.<name>] table with url"
                        " and secret in your TOML file (SOLOOPS_CONFIG), or the same as JSON"
                        " in SOLOOPS_HOOKS. The README shows both."
                    )
                )
            ]
        listed = ", ".join(self._hooks)
        if name is None or name not in self._hooks:
            lead = "Hooks" if name is None else f"There is no hook {name!r}. Hooks"
            return [Reply(text=f"{lead}: {listed}. Usage: /hook <name> <text>")]
        if not text:
            raise Refusal(f"/hook {name} needs some text to send. Usage: /hook <name> <text>")
        return Propose(
            Action(
                name="hook",
                connector="webhook",
                operation="post",
                params={"hook": name, "payload": {"text": text, "from": actor}},
                summary=f"Post to the {name} hook: {text[:300]}",
            )
        )

    async def _confirm(self, text: str, ctx: TaskContext) -> AgentResult:
        action = {"confirm": text}
        decision = ctx.decision
        if decision is None or not decision.covers(self.name, action):
            return NeedsApproval(summary=f"Confirm: {text}", action=action)
        await self._reports.record(
            f"confirm.{decision.outcome}",
            actor=decision.by or "system",
            subject=f"approval:{decision.approval_id}",
            payload={"text": text[:200], "task": ctx.task_id},
        )
        if decision.outcome == "approved":
            return [Reply(text=f"Confirmed by {decision.who}: {text}")]
        why = {"rejected": f"rejected by {decision.who}", "expired": "the approval expired"}
        return [
            Reply(text=f"Not confirmed ({why.get(decision.outcome, decision.outcome)}): {text}")
        ]


def build(ports: Ports) -> OpsAgent:
    """The ops agent: reports, approvals and the lifecycle control port."""
    return OpsAgent(
        ports.catalog,
        ports.reports,
        ports.approvals,
        ports.require_control(),
        ports.clock,
        hooks=list(ports.settings.hooks),
        # Its own, empty namespace: /status reads the shared index's state through it.
        memory=ports.memory(NAMESPACE),
    )


def _help_args(tokens: list[str]) -> dict[str, Any]:
    return {"topic": tokens[0]} if tokens else {}


def _decide(decision: str) -> Callable[[list[str]], dict[str, Any]]:
    def build_fields(tokens: list[str]) -> dict[str, Any]:
        if len(tokens) != 1:
            raise ValueError("takes the code shown on the card")
        return {"code": tokens[0].upper(), "decision": decision}

    return build_fields


def _edit_args(rest: str) -> dict[str, Any]:
    code, _, text = rest.strip().partition(" ")
    if not code or not text.strip():
        raise ValueError("takes the card's code and the new text")
    return {"code": code.upper(), "text": text.strip()}


def _hook_args(rest: str) -> dict[str, Any]:
    if not rest:
        return {}
    name, _, text = rest.partition(" ")
    return {"name": name.lower(), "text": text.strip()}


def _one_agent(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes one agent name (see /agents)")
    return {"agent": tokens[0].lower()}


def _undo_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) > 1:
        raise ValueError("takes at most one event number")
    return {"event": tokens[0].lstrip("#")} if tokens else {}


C = CommandSpec
COMMANDS = (
    C("help", "help", "help [command]", "list commands, or explain one", "", "tokens", _help_args),
    C("status", "status", "status", "tasks by state, deliveries, notes"),
    C(
        "events",
        "events",
        "events [n]",
        "the newest n events (default 10, at most 50)",
        "/events 20",
        "tokens",
        limit_arg,
    ),
    C(
        "confirm",
        "confirm",
        "confirm <text>",
        "ask yourself for a yes/no with an approval card; the answer is logged",
        "/confirm ship the October newsletter",
        "text",
        lambda text: {"text": text},
    ),
    C("pending", "pending", "pending", "approvals waiting for you, with their buttons"),
    C(
        "approve",
        "decide",
        "approve <code>",
        "approve the card with this code",
        "/approve K7Q2MX",
        "tokens",
        _decide("approve"),
    ),
    C(
        "reject",
        "decide",
        "reject <code>",
        "reject the card with this code",
        "/reject K7Q2MX",
        "tokens",
        _decide("reject"),
    ),
    C(
        "edit",
        "edit",
        "edit <code> <new text>",
        "replace the text of a card's email or draft; a new card asks again",
        "/edit K7Q2MX Hi Jane, just checking in about the new site.",
        "text",
        _edit_args,
    ),
    C(
        "hook",
        "hook",
        "hook <name> <text>",
        "post to one of your webhooks (n8n, Zapier, a script), with approval",
        "/hook crm new lead Jane Doe",
        "optional_text",
        _hook_args,
    ),
    C(
        "policy",
        "policy",
        "policy [agent.action change]",
        "show policies, or change one",
        "/policy ops.hook first-runs 3",
        "tokens",
        lambda tokens: {"words": tuple(tokens)},
    ),
    C("agents", "agents", "agents", "agents: state, last run, failures, budget"),
    C(
        "pause",
        "pause",
        "pause <agent>",
        "hold an agent's work",
        "/pause ops",
        "tokens",
        _one_agent,
    ),
    C(
        "resume",
        "resume",
        "resume <agent>",
        "let an agent work again",
        "/resume ops",
        "tokens",
        _one_agent,
    ),
    C(
        "undo",
        "undo",
        "undo [event]",
        "undo the last reversible action (or the one an event names)",
        "",
        "tokens",
        _undo_args,
    ),
    C("failed", "failed", "failed", "dead letters, with Retry / Discard"),
)

FEATURE = Feature(
    name="ops",
    build=build,
    intents=(
        HelpIntent,
        StatusIntent,
        EventsIntent,
        ConfirmIntent,
        PendingIntent,
        DecideIntent,
        EditIntent,
        HookIntent,
        PolicyIntent,
        AgentsIntent,
        PauseIntent,
        ResumeIntent,
        UndoIntent,
        FailedIntent,
    ),
    commands=COMMANDS,
    phrasings={
        "help": Phrasings(
            "Show the commands",
            ("help", "what can you do?", "which commands are there?", "how do I use this?"),
        ),
        "status": Phrasings(
            "Show the status",
            (
                "how are you doing?",
                "how is soloops doing?",
                "status report",
                "is everything running?",
                "is everything ok?",
                "any failures?",
            ),
        ),
        "events": Phrasings(
            "Show recent events",
            ("show the latest events", "what happened recently?", "show me the log"),
        ),
    },
    capabilities=frozenset({("webhook", "post")}),
    namespaces=frozenset({NAMESPACE}),
    # /hook <name> <text>: posts to your own automation (n8n, Zapier, a script).
    # A hook carries no amount and no recipient: thresholds on those cannot apply.
    policies={"hook": Rule(mode=Mode.APPROVE, measures=frozenset())},
    hints={
        ("webhook", "permanent"): (
            "The receiver refused the request. Check the hook's url and secret in your settings"
            " (SOLOOPS_HOOKS or [hooks.<name>]), then Retry."
        ),
        ("webhook", "exhausted"): (
            "The receiver kept failing or timing out. Check that it is up, then Retry."
        ),
    },
    control_kinds=frozenset(
        {
            "help",
            "status",
            "events",
            "agents",
            "pause",
            "resume",
            "pending",
            "failed",
            "policy",
            "edit",
        }
    ),
    operator_controls=True,
    # /help answers from the command catalogue alone: it runs inside the message's commit.
    inline_kinds=frozenset({"help"}),
)
