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

When nothing fits (the best score is under the floor, or the message asks soloops to act
in the world - "send an email to Jane", "book a flight" - and no feature's phrasings
match it strongly), the router does not guess: it says it cannot do that yet and lists
the closest commands with their usage. Only a question falls back to recall. A bare
number with no question waiting is answered as such, never with a menu.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from agents.base import Agent, AgentResult, Reroute, TaskContext
from agents.feature import CommandSpec, Feature, Phrasings
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Option, Reply
from memory.clock import Clock, SystemClock
from memory.embedder import Embedder
from memory.ephemeral import EphemeralMemory
from memory.errors import EmbedderUnavailable

if TYPE_CHECKING:  # numpy loads with the first vector, not at start-up
    import numpy as np

Record = Callable[..., Awaitable[int]]
MakeIntent = Callable[..., Intent]

QUESTION_BONUS = 0.1
MAX_OPTIONS = 3
# Closest commands listed when soloops cannot do what was asked.
MAX_CLOSEST = 3
# A request to act in the world ("send", "book", ...) routes only to an intent whose
# phrasings it matches this well: notes and searches never take it.
REQUEST_THRESHOLD = 0.7
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


# Verbs asking soloops to act in the world. No note and no search is such a request;
# a feature that does it matches its own phrasings above REQUEST_THRESHOLD.
_REQUEST = re.compile(
    r"^\s*(?:(?:please|pls|hey|ok)\W+)*(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?"
    r"(?:send|e-?mail|mail|text|message|sms|whatsapp|call|phone|ring|dial|book|reserve|order"
    r"|buy|purchase|pay|transfer|wire|post|tweet|publish|share|translate|play|stream|download"
    r"|upload|print|install|ship|deliver|navigate|drive|turn\s+(?:on|off)|get\s+me"
    r"|fetch\s+me|reply\s+to|forward)\b"
    # "Call with Jane went well", "Order #12 shipped": the word is a noun, a note follows.
    r"(?!\s+(?:with|from|of|is|was|were|went|are|has|had|have|number|no|id|office|shop"
    r"|club|price|list|date)\b)(?!\s*[#\d:])",
    re.IGNORECASE,
)
_BARE_NUMBER = re.compile(r"^\s*#?\d+\s*[.)]?\s*$")


def looks_like_request(text: str) -> bool:
    """Whether a message asks soloops to act in the world ("send an email to Jane")."""
    return bool(_REQUEST.match(text))


def is_bare_number(text: str) -> bool:
    """Whether a message is only a number ("1", "2.", "#3")."""
    return bool(_BARE_NUMBER.match(text))


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
    """The router's choice: ``chosen`` is None when it must ask, offering ``options``,
    or when nothing fits (``unsupported``: say what soloops can do instead)."""

    chosen: str | None
    ranked: tuple[Choice, ...]
    options: tuple[Choice, ...] = ()
    unsupported: bool = False


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
    floor: float = 0.0,
    request: bool = False,
    max_options: int = MAX_OPTIONS,
) -> RouteChoice:
    """Pick the intent for a message from its similarity to each intent's examples.

    A question adds ``QUESTION_BONUS`` to recall and is never routed to remember. The
    best intent wins when it reaches ``threshold`` and leads the runner-up by ``margin``.
    When the best is under ``floor`` nothing fits: a question goes to recall, anything
    else is ``unsupported``. A ``request`` (asking to act in the world) never goes to notes
    or recall and wins only at ``REQUEST_THRESHOLD``; it is never asked about.
    Otherwise up to ``max_options`` choices within ``OPTION_WINDOW`` of the best are
    offered.
    """
    adjusted = {
        kind: score + (QUESTION_BONUS if question and kind == "recall" else 0.0)
        for kind, score in scores.items()
        # A question asks; it is never a note to keep ("what is the door code?" reads
        # much like "the door code is 1234", which is a remember phrasing).
        if not (question and kind == "remember")
    }
    ranked = tuple(
        Choice(kind, score)
        for kind, score in sorted(adjusted.items(), key=lambda item: (-item[1], item[0]))
    )
    if request:
        # A request to act is neither a note to keep nor a search.
        candidates = tuple(c for c in ranked if c.kind not in ("remember", "recall"))
        best_request = candidates[0] if candidates else None
        if best_request is not None and best_request.score >= max(threshold, REQUEST_THRESHOLD):
            runner = candidates[1].score if len(candidates) > 1 else float("-inf")
            if best_request.score - runner >= margin:
                return RouteChoice(best_request.kind, ranked[:max_options])
        return RouteChoice(None, ranked[:max_options], unsupported=True)
    if not ranked:
        return RouteChoice(None, (), unsupported=not question)
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else float("-inf")
    if best.score >= threshold and best.score - runner_up >= margin:
        return RouteChoice(best.kind, ranked[:max_options])
    # The question bonus does not make a fit (nor does a remember score a question lost).
    if max(scores[c.kind] for c in ranked) < floor:
        if question and "recall" in adjusted:
            return RouteChoice("recall", ranked[:max_options])
        return RouteChoice(None, ranked[:max_options], unsupported=True)
    options = tuple(c for c in ranked if c.score >= best.score - OPTION_WINDOW)
    return RouteChoice(None, ranked[:max_options], options[:max_options])


def closest_commands(
    scores: Mapping[str, float],
    command_scores: Mapping[str, float],
    catalog: Sequence[CommandSpec],
    limit: int = MAX_CLOSEST,
) -> list[CommandSpec]:
    """The commands nearest a message: by their intent's phrasings or their own summary."""

    def score(command: CommandSpec) -> float:
        return max(scores.get(command.kind, -1.0), command_scores.get(command.name, -1.0))

    return sorted(catalog, key=lambda c: (-score(c), c.name))[:limit]


def cannot_do(closest: Sequence[CommandSpec]) -> str:
    """The reply for a request soloops cannot handle: what it can do instead."""
    lines = ["I can't do that yet."]
    if closest:
        lines.append("Closest:")
        lines += [f"  /{_usage(c)} - {c.summary}" for c in closest]
    lines.append("Send /help for all.")
    return "\n".join(lines)


def _usage(command: CommandSpec, width: int = 48) -> str:
    usage = command.usage.split(" | ")[0]
    return usage if len(usage) <= width else usage[: width - 1] + "…"


def no_choice_waiting(text: str) -> str:
    """The reply for a bare number when no question offered choices."""
    return (
        f"{text.strip()!r} answers no question: nothing is waiting for a choice."
        " Send /help for the commands."
    )


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
        floor: float = 0.4,
        catalog: Sequence[CommandSpec] = (),
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
        self._floor = floor
        self._catalog = tuple(catalog)
        self._commands: np.ndarray | None = None
        self._note_after_s = note_after_s
        self._clock = clock or SystemClock()
        self._matrix: np.ndarray | None = None
        self._owners: list[str] = []
        self._lock = asyncio.Lock()

    async def scores(self, text: str) -> dict[str, float]:
        """Cosine similarity of ``text`` to each intent's closest phrasing."""
        return (await self._all_scores(text))[0]

    async def _all_scores(self, text: str) -> tuple[dict[str, float], dict[str, float]]:
        """Similarity to each intent (closest phrasing) and to each command's summary."""
        await self._prepare()
        assert self._matrix is not None and self._commands is not None
        vector = await asyncio.to_thread(self._embedder.embed, [text])
        sims = self._matrix @ vector[0]
        best: dict[str, float] = {}
        for kind, sim in zip(self._owners, sims, strict=True):
            best[kind] = max(best.get(kind, -1.0), float(sim))
        commands = {
            c.name: float(sim)
            for c, sim in zip(self._catalog, self._commands @ vector[0], strict=True)
        }
        return best, commands

    async def _prepare(self) -> None:
        async with self._lock:
            if self._matrix is not None:
                return
            await self._embedder.ready()
            owners = [k for k, ex in self._examples.items() for _ in ex.phrasings]
            phrasings = [p for ex in self._examples.values() for p in ex.phrasings]
            described = [_describe(c) for c in self._catalog]
            vectors = await asyncio.to_thread(self._embedder.embed, phrasings + described)
            self._matrix = vectors[: len(phrasings)]
            self._commands = vectors[len(phrasings) :]
            self._owners = owners

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, FreeTextIntent)
        text = intent.text.strip()
        conversation = intent.conversation
        # Only a wait for the model to load counts (on the injected clock): a slow
        # embedding under CPU load is not "waiting for the model".
        if is_bare_number(text):
            # The gateway found no question waiting for it: a number alone means nothing.
            await self._record(
                "router.decided",
                actor="router",
                subject=f"task:{ctx.task_id}",
                payload={"chosen": None, "ranked": [], "reason": "bare_number"},
            )
            return [Reply(text=no_choice_waiting(text))]
        loading = not self._embedder.is_ready
        started = self._clock.now()
        try:
            scores, command_scores = await self._all_scores(text)
        except EmbedderUnavailable:
            return [Reply(text=NO_MODEL)]
        waited = (self._clock.now() - started).total_seconds() if loading else 0.0
        choice = choose_route(
            scores,
            threshold=self._threshold,
            margin=self._margin,
            question=looks_like_question(text),
            floor=self._floor,
            request=looks_like_request(text),
        )
        await self._record(
            "router.decided",
            actor="router",
            subject=f"task:{ctx.task_id}",
            payload={
                "chosen": choice.chosen,
                "ranked": [[c.kind, round(c.score, 3)] for c in choice.ranked],
                **({"reason": "unsupported"} if choice.unsupported else {}),
            },
        )
        if choice.unsupported:
            self._note_turn(conversation.lane, text)  # "what did I just say" still finds it
            closest = closest_commands(scores, command_scores, self._catalog)
            return [Reply(text=cannot_do(closest))]
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
        # A question carries nothing to recall later: only statements are kept.
        if self._ephemeral is not None and text and not looks_like_question(text):
            self._ephemeral.add(lane, text, self._clock.now())


def _describe(command: CommandSpec) -> str:
    return f"{command.summary}: {command.example}" if command.example else command.summary


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
        floor=memory.router_floor,
        catalog=ports.catalog,
        note_after_s=memory.load_note_after_s,
        clock=ports.clock,
    )


FEATURE = Feature(name="router", build=build, intents=(FreeTextIntent,))
