"""The free-text router: a message that is not a command is routed by meaning.

Each feature declares plain-language phrasings of its intents (``Feature.phrasings``).
The router embeds them once, compares a message with them (cosine, best example per
intent), and :func:`choose_route` picks an intent when the best score reaches the threshold and
beats the runner-up by a margin. A question leans towards recall. Otherwise the
router asks which was meant, offering the top choices as options.

Free text reaches the router as a task (``FreeTextIntent``), not inside the gateway:
the gateway's write transaction never waits for a model, a crash while the model
loads reruns the routing, and the answer keeps its place in the conversation's order.
The router never calls another agent: it answers :class:`~agents.base.Reroute` with the
typed intent, and the coordinator re-targets the same task (same idempotency key, same
place in the lane), holding it if that agent is paused, degraded or over budget, exactly
as for a typed command. A routed guess never proposes an action or asks for approval.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from agents.base import Agent, AgentResult, Reroute, TaskContext
from agents.feature import Feature, Phrasings
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Option, Reply
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder
from memory.ephemeral import EphemeralMemory
from memory.errors import EmbedderUnavailable

Record = Callable[..., Awaitable[int]]
MakeIntent = Callable[..., Intent]

QUESTION_BONUS = 0.1
MAX_OPTIONS = 3
# When asking, offer only choices this close to the best one: a distant third is noise.
OPTION_WINDOW = 0.15
_QUESTION_START = re.compile(
    r"^(what|when|where|who|whom|whose|which|why|how|did|does|do|is|are|was|were|can|could"
    r"|should|has|have|any)\b",
    re.IGNORECASE,
)

# How people start a note in plain words; the note is what follows.
_LEAD_IN = re.compile(
    r"^\s*(?:please\s+)?(?:remember\s+(?:that|to)\b|remember\s*:|note\s+(?:that\b|down\b)|note\s*:"
    r"|save\s+this\s*:|keep\s+in\s+mind\s+(?:that\b)?|don'?t\s+forget\s+(?:that\b|to\b)?"
    r"|do\s+not\s+forget\s+(?:that\b|to\b)?)[\s,:]*",
    re.IGNORECASE,
)


def strip_lead_in(text: str) -> str:
    """The note in "remember that X" / "note: X" / "don't forget X": X (the text if
    nothing would be left)."""
    stripped = _LEAD_IN.sub("", text, count=1).strip()
    return stripped or text


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


class FreeTextIntent(Intent):
    """A message that is not a command: the router decides what it means."""

    kind: Literal["free_text"] = "free_text"
    text: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The router's choice: ``chosen`` is None when it must ask, offering ``options``."""

    chosen: str | None
    ranked: tuple[Choice, ...]
    options: tuple[Choice, ...] = ()


def looks_like_question(text: str) -> bool:
    """Whether a message reads as a question ("...?" or "what/when/who ...")."""
    stripped = text.strip()
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped))


def choose_route(
    scores: Mapping[str, float],
    *,
    threshold: float,
    margin: float,
    question: bool = False,
    max_options: int = MAX_OPTIONS,
) -> RouteChoice:
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
        return RouteChoice(None, ())
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else float("-inf")
    if best.score >= threshold and best.score - runner_up >= margin:
        return RouteChoice(best.kind, ranked[:max_options])
    options = tuple(c for c in ranked if c.score >= best.score - OPTION_WINDOW)
    return RouteChoice(None, ranked[:max_options], options[:max_options])


def command_for(kind: str, phrasings: Phrasings, text: str) -> str:
    """The command text that means ``kind`` applied to ``text``."""
    flat = " ".join(text.split())
    return f"/{kind} {flat}" if phrasings.text_field else f"/{kind}"


class RouterAgent(Agent):
    """Routes free text to the intent whose phrasings it resembles."""

    name = "router"

    def __init__(
        self,
        phrasings: Mapping[str, Phrasings],
        embedder: Embedder,
        record: Record,
        make_intent: MakeIntent,
        *,
        ephemeral: EphemeralMemory | None = None,
        threshold: float = 0.5,
        margin: float = 0.05,
        note_after_s: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self._examples = dict(phrasings)
        self._embedder = embedder
        self._record = record
        self._make_intent = make_intent
        self._ephemeral = ephemeral
        self._threshold = threshold
        self._margin = margin
        self._note_after_s = note_after_s
        self._clock = clock or SystemClock()
        self._matrix: np.ndarray | None = None
        self._owners: list[str] = []
        self._lock = asyncio.Lock()

    async def scores(self, text: str) -> dict[str, float]:
        """Cosine similarity of ``text`` to each intent's closest phrasing."""
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

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, FreeTextIntent)
        text = intent.text.strip()
        conversation = intent.conversation
        # Only a wait for the model to load counts (on the injected clock): a slow
        # embedding under CPU load is not "waiting for the model".
        loading = not self._embedder.is_ready
        started = self._clock.now()
        try:
            scores = await self.scores(text)
        except EmbedderUnavailable:
            return [Reply(text=NO_MODEL)]
        waited = (self._clock.now() - started).total_seconds() if loading else 0.0
        choice = choose_route(
            scores,
            threshold=self._threshold,
            margin=self._margin,
            question=looks_like_question(text),
        )
        await self._record(
            "router.decided",
            actor="router",
            subject=f"task:{ctx.task_id}",
            payload={
                "chosen": choice.chosen,
                "ranked": [[c.kind, round(c.score, 3)] for c in choice.ranked],
            },
        )
        if choice.chosen is None:
            options = tuple(
                Option(
                    label=self._examples[c.kind].label,
                    command=command_for(c.kind, self._examples[c.kind], text),
                )
                for c in choice.options
            )
            self._note_turn(conversation.lane, text)
            return [Reply(text="I'm not sure what you meant. Which one?", options=options)]
        kind = choice.chosen
        field = self._examples[kind].text_field
        value = strip_lead_in(text) if kind == "remember" else text
        fields = {field: value} if field else {}
        routed = self._make_intent(kind, conversation, intent.idempotency_key, **fields)
        return Reroute(routed, memo={"waited_s": round(waited, 3), "text": text})

    async def after_reroute(
        self, routed: Intent, replies: list[Reply], memo: dict[str, Any]
    ) -> list[Reply]:
        """Add the "waited for the model" note; remember the turn for recall."""
        waited = float(memo.get("waited_s", 0.0))
        if waited >= self._note_after_s and replies:
            last = replies[-1]
            note = f"(Waited {waited:.0f} s for the language model to load.)"
            replies[-1] = last.model_copy(update={"text": f"{last.text}\n{note}"})
        if routed.kind != "remember":  # a remembered message is stored already
            # After the agent ran, so a question does not find itself among the turns.
            self._note_turn(routed.conversation.lane, str(memo.get("text", "")))
        return replies

    def _note_turn(self, lane: str, text: str) -> None:
        if self._ephemeral is not None and text:
            self._ephemeral.add(lane, text, self._clock.now())


def build(ports: Ports) -> RouterAgent:
    """The router over every feature's phrasings."""
    memory = ports.settings.memory
    return RouterAgent(
        ports.phrasings,
        ports.embedder,
        ports.reports.record,
        ports.make_intent,
        ephemeral=ports.recent_turns,
        threshold=memory.router_threshold,
        margin=memory.router_margin,
        note_after_s=memory.load_note_after_s,
        clock=ports.clock,
    )


FEATURE = Feature(name="router", build=build, intents=(FreeTextIntent,))
