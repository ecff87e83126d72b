"""The free-text router: a message that is not a command is routed by meaning.

Each agent keeps example phrasings of its intents (``Agent.examples``). The router
embeds them once, compares a message with them (cosine, best example per intent),
and :func:`decide` picks an intent when the best score reaches the threshold and
beats the runner-up by a margin. A question leans towards recall. Otherwise the
router asks which was meant, offering the top choices as options.

Free text reaches the router as a task (``FreeTextIntent``), not inside the gateway:
the gateway's write transaction never waits for a model, a crash while the model
loads reruns the routing, and the answer keeps its place in the conversation's order.
The chosen intent runs on its agent within the same task and idempotency key, so a
rerun never repeats its effect.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from agents.actions import Propose
from agents.base import Agent, Examples, NeedsApproval, Outcome, TaskContext
from agents.intents import INTENTS, FreeTextIntent, Intent
from agents.replies import Option, Reply
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder
from memory.ephemeral import EphemeralMemory
from memory.errors import EmbedderUnavailable
from memory.events import EventLog

QUESTION_BONUS = 0.1
MAX_OPTIONS = 3
# When asking, offer only choices this close to the best one: a distant third is noise.
OPTION_WINDOW = 0.15
_QUESTION_START = re.compile(
    r"^(what|when|where|who|whom|whose|which|why|how|did|does|do|is|are|was|were|can|could"
    r"|should|has|have|any)\b",
    re.IGNORECASE,
)

NO_MODEL = (
    "I cannot read plain sentences right now (the language model is unavailable), so"
    " please use a command: /remember <text> to save, /recall <words> to search."
    " /help lists everything."
)


@dataclass(frozen=True, slots=True)
class Choice:
    """One intent and how well the message matched it."""

    kind: str
    score: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The router's verdict: ``chosen`` is None when it must ask, offering ``options``."""

    chosen: str | None
    ranked: tuple[Choice, ...]
    options: tuple[Choice, ...] = ()


def looks_like_question(text: str) -> bool:
    """Whether a message reads as a question ("...?" or "what/when/who ...")."""
    stripped = text.strip()
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped))


def decide(
    scores: Mapping[str, float],
    *,
    threshold: float,
    margin: float,
    question: bool = False,
    max_options: int = MAX_OPTIONS,
) -> Decision:
    """Pick the intent for a message from its similarity to each intent's examples.

    A question adds ``QUESTION_BONUS`` to recall. The best intent wins when it reaches
    ``threshold`` and leads the runner-up by ``margin``; otherwise up to
    ``max_options`` choices within ``OPTION_WINDOW`` of the best are offered.
    """
    adjusted = {
        kind: score + (QUESTION_BONUS if question and kind == "recall" else 0.0)
        for kind, score in scores.items()
    }
    ranked = tuple(
        Choice(kind, score)
        for kind, score in sorted(adjusted.items(), key=lambda item: (-item[1], item[0]))
    )
    if not ranked:
        return Decision(None, ())
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else float("-inf")
    if best.score >= threshold and best.score - runner_up >= margin:
        return Decision(best.kind, ranked[:max_options])
    options = tuple(c for c in ranked if c.score >= best.score - OPTION_WINDOW)
    return Decision(None, ranked[:max_options], options[:max_options])


def command_for(kind: str, examples: Examples, text: str) -> str:
    """The command text that means ``kind`` applied to ``text``."""
    flat = " ".join(text.split())
    return f"/{kind} {flat}" if examples.text_field else f"/{kind}"


class RouterAgent(Agent):
    """Routes free text to the agent whose examples it resembles."""

    name: ClassVar[str] = "router"
    kinds: ClassVar[frozenset[str]] = frozenset({"free_text"})

    def __init__(
        self,
        agents: Sequence[Agent],
        embedder: Embedder,
        events: EventLog,
        *,
        ephemeral: EphemeralMemory | None = None,
        threshold: float = 0.5,
        margin: float = 0.05,
        note_after_s: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self._agents: dict[str, Agent] = {}
        self._examples: dict[str, Examples] = {}
        for agent in agents:
            for kind, examples in agent.examples.items():
                if kind in agent.kinds:
                    self._agents[kind] = agent
                    self._examples[kind] = examples
        self._embedder = embedder
        self._events = events
        self._ephemeral = ephemeral
        self._threshold = threshold
        self._margin = margin
        self._note_after_s = note_after_s
        self._clock = clock or SystemClock()
        self._matrix: np.ndarray | None = None
        self._owners: list[str] = []
        self._lock = asyncio.Lock()

    async def scores(self, text: str) -> dict[str, float]:
        """Cosine similarity of ``text`` to each intent's closest example."""
        await self._prepare()
        assert self._matrix is not None
        vector = await asyncio.to_thread(self._embedder.embed, [text])
        sims = self._matrix @ vector[0]
        best: dict[str, float] = {}
        for kind, sim in zip(self._owners, sims, strict=True):
            best[kind] = max(best.get(kind, -1.0), float(sim))
        return best

    async def _prepare(self) -> None:
        async with self._lock:
            if self._matrix is not None:
                return
            await self._embedder.ready()
            owners = [k for k, ex in self._examples.items() for _ in ex.phrasings]
            phrasings = [p for ex in self._examples.values() for p in ex.phrasings]
            self._matrix = await asyncio.to_thread(self._embedder.embed, phrasings)
            self._owners = owners

    async def handle(self, intent: Intent, ctx: TaskContext) -> Outcome:
        assert isinstance(intent, FreeTextIntent)
        text = intent.text.strip()
        conversation = intent.conversation
        started = time.perf_counter()
        try:
            scores = await self.scores(text)
        except EmbedderUnavailable:
            return [Reply(text=NO_MODEL)]
        waited = time.perf_counter() - started
        decision = decide(
            scores,
            threshold=self._threshold,
            margin=self._margin,
            question=looks_like_question(text),
        )
        await self._events.record(
            "router.decided",
            actor="router",
            subject=f"task:{ctx.task_id}",
            payload={
                "chosen": decision.chosen,
                "ranked": [[c.kind, round(c.score, 3)] for c in decision.ranked],
            },
        )
        if decision.chosen is None:
            options = tuple(
                Option(
                    label=self._examples[c.kind].label,
                    command=command_for(c.kind, self._examples[c.kind], text),
                )
                for c in decision.options
            )
            self._note_turn(conversation.lane, text)
            return [Reply(text="I'm not sure what you meant. Which one?", options=options)]
        kind = decision.chosen
        examples = self._examples[kind]
        fields = {examples.text_field: text} if examples.text_field else {}
        routed = INTENTS.validate_python(
            {
                "kind": kind,
                "conversation": conversation,
                "idempotency_key": intent.idempotency_key,
                **fields,
            }
        )
        outcome = await self._agents[kind].handle(routed, ctx)
        if isinstance(outcome, NeedsApproval | Propose):
            # Runs under the router's own (empty) capabilities: a routed guess never acts
            # on the outside world without a typed command.
            return outcome
        replies = list(outcome)
        if waited >= self._note_after_s and replies:
            last = replies[-1]
            note = f"(Waited {waited:.0f} s for the language model to load.)"
            replies[-1] = last.model_copy(update={"text": f"{last.text}\n{note}"})
        if kind != "remember":  # a remembered message is stored already
            # After the agent ran, so a question does not find itself among the turns.
            self._note_turn(conversation.lane, text)
        return replies

    def _note_turn(self, lane: str, text: str) -> None:
        if self._ephemeral is not None:
            self._ephemeral.add(lane, text, self._clock.now())
