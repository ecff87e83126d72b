"""Reading a reply's files for delivery, the same way on every platform.

A reply names its files by path in the home (:class:`agents.replies.Attachment`); each
sender reads them at every attempt, so a delivery retried after a restart sends the
same bytes. A file missing from the home fails the delivery for good (retrying cannot
bring it back) with a message saying which file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.replies import Attachment
from bot.outbox import DeliveryError


async def read_attachment(attachment: Attachment) -> bytes:
    """The file's bytes, read from its path in the home, off the event loop."""
    try:
        return await asyncio.to_thread(Path(attachment.path).read_bytes)
    except OSError as exc:
        raise DeliveryError(
            f"the file {attachment.filename} is gone from the home ({exc.strerror})",
            permanent=True,
        ) from None
