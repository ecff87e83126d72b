"""The console front end: the operator's terminal as a chat.

Interactive (a terminal): a prompt, replies as they come. Scripted (stdin is a pipe
or file): each line is one message; after each, the console waits until the work it
started has settled and its replies are printed, then reads the next; at end of input
it exits 0. So ``printf '/remember x\\n/recall x\\n' | soloops chat`` is a script.
"""

from __future__ import annotations

import asyncio
import getpass
import uuid
from datetime import UTC, datetime
from typing import BinaryIO, TextIO

from agents.replies import Reply, body_text
from bot.inbound import Inbound
from bot.outbox import Delivery, DeliveryError

PLATFORM = "console"
CHAT_ID = "local"
MAX_LINE_BYTES = 4 * 1024 * 1024


def render(reply: Reply) -> str:
    """A reply as console text: options numbered, answered by sending the number; each
    file it carries (a chart, an invoice PDF) as its path in the home."""
    text = body_text(reply)
    for attachment in reply.attachments:
        text += f"\n📎 {attachment.filename}: {attachment.path}"
    return text if reply.tone == "info" else f"⚠ {text}"


class ConsoleSender:
    """Prints replies to the terminal."""

    platform = PLATFORM

    def __init__(self, out: TextIO, *, interactive: bool = False) -> None:
        self._out = out
        self._interactive = interactive

    async def send(self, delivery: Delivery) -> str | None:
        text = render(delivery.reply)
        if delivery.replaces_ref is not None or delivery.row.replaces_outbox_id is not None:
            text = f"[card updated] {text}"
        if self._interactive:
            text = "\n".join(f"  {line}" for line in text.splitlines())
        try:
            self._out.write(text + "\n")
            self._out.flush()
        except (BrokenPipeError, ValueError) as exc:  # the reader went away
            raise DeliveryError(f"console output closed: {exc}", permanent=True) from exc
        return str(delivery.row.id)


class ConsoleSession:
    """Reads lines, hands them to the gateway, waits for their replies."""

    def __init__(self, stdin: BinaryIO, out: TextIO, *, interactive: bool) -> None:
        self._stdin = stdin
        self._out = out
        self._interactive = interactive
        self._session = uuid.uuid4().hex[:12]
        self._count = 0
        try:
            self._user = getpass.getuser()
        except (KeyError, OSError):
            self._user = "operator"

    def inbound(self, text: str) -> Inbound:
        """Wrap one typed line as an inbound message."""
        self._count += 1
        return Inbound(
            platform=PLATFORM,
            message_id=f"{self._session}-{self._count}",
            chat_id=CHAT_ID,
            user_id=self._user,
            text=text,
            received_at=datetime.now(UTC),
        )

    async def read_line(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self._interactive:
            self._out.write("> ")
            self._out.flush()
        raw: bytes = await asyncio.to_thread(self._stdin.readline, MAX_LINE_BYTES)
        if not raw:
            return None
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        else:
            # An over-long line: drop the rest of it so it is not read as the next message.
            while raw and not raw.endswith(b"\n"):
                more: bytes = await asyncio.to_thread(self._stdin.readline, MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw.decode("utf-8", errors="replace")

    def banner(self, data_dir: str) -> None:
        """Greeting for an interactive session."""
        if self._interactive:
            self._out.write(
                f"soloops console — data in {data_dir}\nType /help for commands, Ctrl-D to quit.\n"
            )
            self._out.flush()
