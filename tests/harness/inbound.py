"""One operator message typed on the console, as tests and crash workers send it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bot.inbound import Inbound


def console_inbound(text: str, message_id: str | None = None, user: str = "op") -> Inbound:
    """``text`` from ``user`` in the console's one conversation; a fresh message id
    unless one is given (a worker restarted with the same id is a duplicate)."""
    return Inbound(
        platform="console",
        message_id=message_id or uuid.uuid4().hex,
        chat_id="local",
        user_id=user,
        text=text,
        received_at=datetime.now(UTC),
    )
