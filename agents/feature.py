"""A feature's declaration: everything the core needs to know to plug one agent in.

Each feature is one module in ``agents/`` (``agents/notes.py``, ``agents/ops.py``...)
that ends with a ``FEATURE = Feature(...)``: its intent models, its commands (what
/help, the Telegram ``/`` menu and the Slack manifest show, and how the grammar turns
arguments into intent fields), the phrasings the free-text router compares messages
with, its capabilities (connector operations, memory namespaces), its default
policies, runbook hints, the kinds that pause never holds, and a factory that builds
its agent from narrow ports. ``agents/registry.py`` assembles the features and checks
them at start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from agents.intents import Intent, kind_of
from agents.policy import Rule

if TYPE_CHECKING:
    from agents.base import Agent
    from agents.intents import Conversation
    from agents.ports import Ports
    from agents.scheduler import JobSpec
    from config import Settings

    JobsFactory = Callable[[Settings, tuple[Conversation, ...]], Sequence[JobSpec]]

ArgStyle = Literal["none", "text", "optional_text", "tokens"]
"""How a command's arguments reach its builder: nothing; the rest of the line verbatim
(required, or ``optional_text``); or shell-style tokens (a list of strings)."""


def no_fields(_: Any) -> dict[str, Any]:
    """The builder of a command whose intent takes no fields from its arguments."""
    return {}


def limit_arg(tokens: list[str]) -> dict[str, Any]:
    """The builder of ``[n]``: an optional limit (the intent's ``limit`` field)."""
    if not tokens:
        return {}
    if len(tokens) > 1:
        raise ValueError("takes at most one number")
    return {"limit": tokens[0]}


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One chat command: ``/name``, builds an intent of ``kind``.

    ``build`` turns the arguments (None, a string or a list of tokens, per ``style``)
    into intent fields; it raises ``ValueError`` with a short reason on bad input.
    """

    name: str
    kind: str
    usage: str
    summary: str
    example: str = ""
    style: ArgStyle = "none"
    build: Callable[[Any], dict[str, Any]] = no_fields


@dataclass(frozen=True, slots=True)
class Phrasings:
    """How operators say an intent in plain words, for the free-text router.

    ``text_field`` names the intent field that receives the whole message (``query``
    for recall); None means the intent takes no text. ``label`` is what a choice
    says when the router has to ask.
    """

    label: str
    phrasings: tuple[str, ...]
    text_field: str | None = None


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: its agent, intents, commands and everything the core enforces.

    ``name`` is the agent's name (in ``/pause``, policies ``<name>.<action>``, events).
    ``capabilities`` are the (connector, operation) pairs its actions may use;
    ``namespaces`` the memory namespaces it may open. ``policies`` are its default
    rules per action name (the policies file and ``/policy`` override them).
    ``hints`` say what to do about a failure, per (connector, failure kind).
    ``control_kinds`` are never held by pause, degradation or budgets.
    ``operator_controls`` gives the agent the lifecycle control port (the ops feature).
    ``scheduler_controls`` gives the agent control over every feature's jobs
    (``/schedule``).
    ``jobs`` declares the feature's standing scheduled jobs (the daily digest), from the
    settings and the operator's home conversations; they are (re)declared at every
    start, which never duplicates one (the scheduler keeps them by id).
    ``optional_connectors`` are connectors its capabilities name that may be left
    unconfigured (email): soloops starts without them and the feature says in chat what
    to set when it needs one.
    ``shared_memory`` are namespaces of its own that /recall searches too (read only:
    only the declaring feature writes or deletes there), so what it remembers about a
    contact answers "what did Jane want?".
    ``bind`` names the command (one of its own, taking free text) that plain text in a
    conversation bound to this feature stands for (``/bind invoices`` in a topic makes
    "Acme 1200 EUR October consulting" an ``/invoice``); None: it cannot be bound.
    ``inline_kinds`` are kinds its agent answers from what it holds in memory alone (no
    I/O, no store reads, no action, no approval: ``/help``). When the conversation's
    lane is idle, such a task runs to its reply inside the transaction that records the
    message: message, task and reply commit together (one commit instead of two).
    """

    name: str
    build: Callable[[Ports], Agent]
    intents: tuple[type[Intent], ...] = ()
    commands: tuple[CommandSpec, ...] = ()
    phrasings: Mapping[str, Phrasings] = field(default_factory=dict)
    capabilities: frozenset[tuple[str, str]] = frozenset()
    namespaces: frozenset[str] = frozenset()
    policies: Mapping[str, Rule] = field(default_factory=dict)
    hints: Mapping[tuple[str, str], str] = field(default_factory=dict)
    control_kinds: frozenset[str] = frozenset()
    operator_controls: bool = False
    jobs: JobsFactory | None = None
    optional_connectors: frozenset[str] = frozenset()
    shared_memory: frozenset[str] = frozenset()
    scheduler_controls: bool = False
    bind: str | None = None
    inline_kinds: frozenset[str] = frozenset()

    @property
    def kinds(self) -> frozenset[str]:
        """The intent kinds this feature's agent handles."""
        return frozenset(kind_of(model) for model in self.intents)
