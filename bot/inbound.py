"""The ``Inbound`` edge model: one message or button press, as any platform sends it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agents.intents import Conversation
from agents.voice_port import AudioRef


class Inbound(BaseModel):
    """A message from a platform, before anything is decided about it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: str = Field(min_length=1, max_length=32)
    message_id: str = Field(
        min_length=1, max_length=128, description="the platform's id, for dedupe"
    )
    chat_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    thread_id: str | None = Field(default=None, max_length=128)
    user_name: str | None = Field(default=None, max_length=256)
    text: str = ""
    callback_data: str | None = Field(default=None, max_length=256, description="a button press")
    received_at: datetime
    audio: AudioRef | None = Field(default=None, description="a voice note's file reference")

    @property
    def conversation(self) -> Conversation:
        """Where replies to this message go."""
        return Conversation(
            platform=self.platform,
            chat_id=self.chat_id,
            user_id=self.user_id,
            thread_id=self.thread_id,
            message_id=self.message_id,
        )

    @property
    def idempotency_key(self) -> str:
        """One key per platform message: the same message never makes two tasks."""
        return f"{self.platform}:{self.message_id}"
