"""Voice notes: a Telegram voice/audio message or a Slack audio file, heard and handled.

The gateway stores the voice note like any message and queues a ``voice`` task with
the platform's file reference (:class:`~agents.voice_port.AudioRef`). This agent
downloads the audio through the platform's file API, transcribes it, says what it
heard ("Heard: …") and then handles the words exactly as typed text: read with the
command grammar and run as that intent in the same task (a :class:`Reroute`: same
idempotency key, same place in the conversation's order). Free text goes to the
free-text router the same way.

Spoken commands need no slash: when the first word names a command ("remember the
door code is 1234"), it is read as that command, as Slack does for DMs.

Failures: with no transcription server, a short reply says what to set. A transient
failure (the server or the platform did not answer) and a permanent one (the server
refused the audio) each get a clear reply; nothing is retried automatically, since
the operator can simply send the note again. The audio itself is never kept: it is
held in memory for the one transcription call, and only the transcript's words reach
the task (and whatever the command they form stores).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from agents.base import Agent, AgentResult, Reroute, TaskContext
from agents.binding_port import TopicBindings
from agents.feature import Feature
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Reply, error
from agents.topics import bound_text
from agents.voice_port import AudioRef, AudioUnavailable, VoicePort
from connectors.base import PermanentError, TransientError

log = logging.getLogger(__name__)

NAME = "voice"
HOW_TO_ENABLE = (
    "I got your voice note but cannot transcribe it: no transcription server is set up."
    " Set SOLOOPS_TRANSCRIBE__BASE_URL (any OpenAI-compatible /audio/transcriptions"
    " server, e.g. a local faster-whisper), and __MODEL / __API_KEY if it needs them,"
    " then restart. Until then, type the message."
)
PUNCTUATION = ".,!?;:\"'“”"


class VoiceIntent(Intent):
    """A voice note to transcribe and handle as typed text."""

    kind: Literal["voice"] = "voice"
    audio: AudioRef


def spoken_command(text: str, commands: frozenset[str]) -> str:
    """``text`` as typed: "Remember the code." -> "/remember the code." when the first
    word names a command; anything else unchanged (free text)."""
    stripped = text.strip()
    if not stripped or stripped.startswith("/"):
        return stripped
    first, _, rest = stripped.partition(" ")
    word = first.strip(PUNCTUATION).lower()
    if word not in commands:
        return stripped
    return f"/{word} {rest.strip()}".strip()


def heard(text: str) -> Reply:
    """What the operator sees first: the words the server heard."""
    return Reply(text=f"Heard: “{text}”")


class VoiceAgent(Agent):
    """Transcribes a voice note, then hands its words on as typed text."""

    name = NAME

    def __init__(
        self,
        port: VoicePort | None,
        commands: frozenset[str],
        bindings: TopicBindings | None = None,
    ) -> None:
        self._port = port
        self._commands = commands
        self._bindings = bindings

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, VoiceIntent)
        port = self._port
        if port is None or not port.configured:
            return [Reply(text=HOW_TO_ENABLE)]
        try:
            audio = await port.fetch(intent.audio)
            text = await port.transcribe(audio, intent.audio, idempotency_key=ctx.idempotency_key)
        except (AudioUnavailable, TransientError) as exc:
            log.info("voice note not transcribed (transient): %s", exc)
            return [
                error(
                    f"I could not transcribe that voice note just now ({exc})."
                    " Nothing was run; send it again in a minute, or type it."
                )
            ]
        except PermanentError as exc:
            log.info("voice note not transcribed: %s", exc)
            return [error(f"I could not transcribe that voice note: {exc}. Nothing was run.")]
        text = " ".join(text.split())
        if not text:
            return [error("I heard nothing in that voice note. Nothing was run.")]
        typed = spoken_command(text, self._commands)
        if self._bindings is not None:
            # Spoken in a topic bound to a feature: the words are that feature's, as
            # typed text there would be ("Acme 1200 EUR" in Billing is an invoice).
            command = await self._bindings.bound_command(intent.conversation)
            if command is not None:
                typed = bound_text(typed, command) or typed
        parsed = port.parse(typed, intent.conversation, intent.idempotency_key)
        if isinstance(parsed, str):
            return [heard(text), error(parsed)]
        # Words that start with a command's name are that command, read strictly (not a
        # guess): it may propose an action, which then always waits for approval.
        return Reroute(parsed, memo={"heard": text}, exact=typed.startswith("/"))

    async def after_reroute(
        self, routed: Intent, replies: list[Reply], memo: dict[str, Any]
    ) -> list[Reply]:
        said = memo.get("heard")
        return [heard(str(said)), *replies] if said else replies


def build(ports: Ports) -> Agent:
    """The voice agent, on its voice port (None: transcription is not wired)."""
    commands = frozenset(spec.name for spec in ports.catalog)
    return VoiceAgent(ports.voice, commands, ports.bindings)


FEATURE = Feature(name=NAME, build=build, intents=(VoiceIntent,))
