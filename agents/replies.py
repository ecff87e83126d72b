"""What agents say back: platform-neutral replies, rendered by each front end."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Reply(BaseModel):
    """One message to the operator, in the conversation that asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    tone: Literal["info", "error"] = "info"

    def to_json(self) -> str:
        """The outbox body."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, body: str) -> Reply:
        """Read an outbox body."""
        return cls.model_validate_json(body)


def error(text: str) -> Reply:
    """A reply that reports a problem."""
    return Reply(text=text, tone="error")
