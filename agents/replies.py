"""What agents say back: platform-neutral replies, rendered by each front end.

A reply may offer ``options``: choices the operator can pick instead of typing. Each
:class:`Option` carries the exact command text it stands for, so picking one is the
same as sending that text. Front ends render them as they can: the console prints
them numbered (a bare number answers), Telegram and Slack as buttons.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CALLBACK_DATA_MAX = 64  # Telegram's limit on callback data, the strictest platform's


class Button(BaseModel):
    """An inline button. ``data`` is opaque to the platform and comes back on a press."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=64)
    data: str = Field(min_length=1, max_length=CALLBACK_DATA_MAX)
    style: Literal["primary", "danger", "default"] = "default"


MAX_OPTIONS = 10


class Option(BaseModel):
    """One choice offered with a reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, max_length=64, description="what the button says")
    command: str = Field(min_length=1, max_length=4096, description="the text it sends")


class Attachment(BaseModel):
    """A file sent with a reply: a chart (``photo``) or an invoice PDF (``document``).

    ``path`` points into the home's ``files/`` folder, where the file was written before
    the reply was queued (:class:`memory.files.FileStore`), so a delivery retried after a
    restart still has it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(min_length=1, max_length=4096)
    filename: str = Field(min_length=1, max_length=255)
    mime: str = Field(min_length=3, max_length=100)
    kind: Literal["photo", "document"] = "document"


class Reply(BaseModel):
    """One message to the operator, in the conversation that asked.

    ``buttons`` render as inline buttons where the platform has them; every action a
    button offers is also written in ``text`` as a command, for the console and as a
    fallback.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    tone: Literal["info", "error"] = "info"
    buttons: tuple[Button, ...] = ()
    options: tuple[Option, ...] = Field(default=(), max_length=MAX_OPTIONS)
    attachments: tuple[Attachment, ...] = Field(default=(), max_length=10)
    # The code of a pending card whose action has text to edit (``/edit CODE text``):
    # front ends with forms (Slack's modal) offer an Edit button for it.
    edit_code: str | None = Field(default=None, max_length=16)

    def to_json(self) -> str:
        """The outbox body."""
        return self.model_dump_json(exclude_defaults=True)

    @classmethod
    def from_json(cls, body: str) -> Reply:
        """Read an outbox body."""
        return cls.model_validate_json(body)


def error(text: str) -> Reply:
    """A reply that reports a problem."""
    return Reply(text=text, tone="error")


def pick_option(text: str, options: tuple[Option, ...]) -> Option | None:
    """The option a bare number ("2", " 2. ") picks, if the text is one and in range."""
    stripped = text.strip().rstrip(".").strip()
    if not stripped.isdecimal() or len(stripped) > 3:
        return None
    number = int(stripped)
    return options[number - 1] if 1 <= number <= len(options) else None


def body_text(reply: Reply) -> str:
    """The reply's text with its options numbered after it, as every platform shows them.

    The operator answers with the number (the gateway maps it back to the option's
    command), so choices work the same in the console, Telegram and Slack.
    """
    if not reply.options:
        return reply.text
    numbered = enumerate(reply.options, 1)
    lines = [f"  {n}. {option.label}: {option.command}" for n, option in numbered]
    return "\n".join([reply.text, *lines, "Send the number of your choice."])
