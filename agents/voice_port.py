"""The voice port: what the voice feature may do with a voice note, and nothing more.

A voice note arrives as an :class:`AudioRef` (the platform's file reference, stored
with the message). The port fetches the audio through the platform's file API (each
front end registers its fetcher when it starts: Telegram ``getFile`` + download, Slack
``url_private_download`` with the bot token), transcribes it on the configured server
and reads the words with the command grammar. The feature never sees the front ends,
the transcription connector or the registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.intents import Conversation, Intent


class AudioRef(BaseModel):
    """A platform's reference to one audio file (nothing of the audio itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: str = Field(min_length=1, max_length=32)
    file_id: str = Field(
        min_length=1, max_length=512, description="Telegram file_id, Slack file id"
    )
    url: str | None = Field(default=None, max_length=2048, description="Slack url_private_download")
    filename: str = Field(default="voice.ogg", min_length=1, max_length=256)
    mime: str = Field(default="audio/ogg", min_length=1, max_length=128)
    duration_s: int | None = Field(default=None, ge=0)
    kind: Literal["voice", "audio"] = "voice"


Fetch = Callable[[AudioRef], Awaitable[bytes]]
Transcribe = Callable[..., Awaitable[str]]
Parse = Callable[[str, Conversation, str], "Intent | str"]


class AudioUnavailable(Exception):
    """The platform would not hand over the audio (no fetcher, file gone, refused)."""


class AudioSources:
    """The platforms' audio fetchers; a front end registers its own when it starts."""

    def __init__(self) -> None:
        self._fetchers: dict[str, Fetch] = {}

    def register(self, platform: str, fetch: Fetch) -> None:
        """Let voice notes from ``platform`` be downloaded with ``fetch``."""
        self._fetchers[platform] = fetch

    async def fetch(self, ref: AudioRef) -> bytes:
        """The audio bytes ``ref`` names.

        Raises:
            AudioUnavailable: no front end for the platform is running.
        """
        fetch = self._fetchers.get(ref.platform)
        if fetch is None:
            raise AudioUnavailable(f"{ref.platform} is not connected, so its audio cannot be read")
        return await fetch(ref)


class VoicePort:
    """Fetch, transcribe, and read words as a typed command (the voice feature's port).

    ``transcribe`` is None when no transcription server is configured. ``parse`` turns
    text into an intent of the registry (the command grammar) or the refusal text.
    """

    def __init__(self, sources: AudioSources, transcribe: Transcribe | None, parse: Parse) -> None:
        self._sources = sources
        self._transcribe = transcribe
        self._parse = parse

    @property
    def configured(self) -> bool:
        """Whether voice notes can be transcribed."""
        return self._transcribe is not None

    async def fetch(self, ref: AudioRef) -> bytes:
        """The audio, downloaded through the platform's file API."""
        return await self._sources.fetch(ref)

    async def transcribe(self, audio: bytes, ref: AudioRef, *, idempotency_key: str) -> str:
        """The words in ``audio`` (connector errors pass through: transient or permanent)."""
        assert self._transcribe is not None, "check configured first"
        return await self._transcribe(
            audio, ref.filename, ref.mime, idempotency_key=idempotency_key
        )

    def parse(self, text: str, conversation: Conversation, key: str) -> Intent | str:
        """``text`` read with the command grammar: an intent, or what to type instead."""
        return self._parse(text, conversation, key)
