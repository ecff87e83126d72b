"""The console front end: the operator's terminal as a chat.

Interactive (a terminal): a prompt, replies as they come. Scripted (stdin is a pipe
or file): each line is one message; after each, the console waits until the work it
started has settled and its replies are printed, then reads the next; at end of input
it exits 0. So ``printf '/remember x\\n/recall x\\n' | soloops chat`` is a script.

In a terminal, lines are read with GNU readline (arrow keys, editing, history kept
in ``console_history`` in the data directory, mode 0600). Readline reads the
terminal byte by byte, so a paste is read whole, past the terminal's own line limit
(4096 bytes in canonical mode, beyond which the kernel drops input silently). It
runs in a daemon thread, so Ctrl-C at the prompt ends the session at once; the
terminal's settings are restored on the way out. The piped mode does not use
readline at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

from agents.replies import Reply, body_text
from bot.inbound import Inbound
from bot.outbox import Delivery, DeliveryError

PLATFORM = "console"
CHAT_ID = "local"
MAX_LINE_BYTES = 4 * 1024 * 1024
PROMPT = "> "
HISTORY_LINES = 1000

log = logging.getLogger(__name__)


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


T = TypeVar("T")


async def in_daemon_thread(read: Callable[..., T], *args: Any) -> T:
    """``read(*args)`` in a daemon thread of its own, awaited.

    Not the default executor: its threads are joined when the loop closes, so a
    SIGTERM or Ctrl-C would wait for the next line (for ever, with stdin a pipe that
    stays open). A daemon thread blocked in a read ends with the process.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | BaseException) -> None:
        if done.done():
            return
        if isinstance(value, BaseException):
            done.set_exception(value)
        else:
            done.set_result(value)

    def run() -> None:
        try:
            value: T | BaseException = read(*args)
        except Exception as exc:  # handed to the awaiting task
            value = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value)

    threading.Thread(target=run, name="console-input", daemon=True).start()
    return await done


class _FdLines:
    """``readline(limit)`` straight from a file descriptor with ``os.read``.

    A thread blocked in a buffered stream's readline holds that stream's lock, and the
    interpreter takes the lock again while it shuts down (a fatal error when the read
    never ends). ``os.read`` holds no Python lock, so a reader left blocked in a daemon
    thread does not stand in the way of exiting.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = b""
        self._eof = False

    @staticmethod
    def of(stream: BinaryIO) -> Callable[[int], bytes]:
        """A readline for ``stream``: from its descriptor when it has one (and nothing is
        buffered on top of it yet), else the stream's own."""
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):  # BytesIO and friends: never block
            return stream.readline
        return _FdLines(fd).readline

    def readline(self, limit: int) -> bytes:
        while not self._eof and b"\n" not in self._pending and len(self._pending) < limit:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self._eof = True
            self._pending += chunk
        cut = self._pending.find(b"\n", 0, limit)
        end = cut + 1 if cut >= 0 else min(limit, len(self._pending))
        line, self._pending = self._pending[:end], self._pending[end:]
        return line


class ConsoleSession:
    """Reads lines, hands them to the gateway, waits for their replies."""

    def __init__(
        self,
        stdin: BinaryIO,
        out: TextIO,
        *,
        interactive: bool,
        history: Path | None = None,
    ) -> None:
        self._stdin = stdin
        self._lines = _FdLines.of(stdin)
        self._out = out
        self._interactive = interactive
        self._history = history
        self._terminal: list[Any] | None = None
        self._readline: Any = None
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

    def open(self) -> None:
        """In a terminal: save its settings, load readline and the history."""
        if not self._interactive:
            return
        with contextlib.suppress(ImportError, OSError, ValueError):
            import termios  # POSIX only, and only for a terminal

            self._terminal = termios.tcgetattr(self._stdin.fileno())
        try:
            import readline  # loading it changes input(): terminal only
        except ImportError:  # a Python built without it: plain input()
            return
        self._readline = readline
        readline.set_history_length(HISTORY_LINES)
        # Tab would complete file names; a chat has none.
        readline.parse_and_bind("tab: self-insert")
        if self._history is not None and self._history.exists():
            try:
                readline.read_history_file(self._history)
            except OSError as exc:
                log.warning("could not read the console history %s: %s", self._history, exc)

    def close(self) -> None:
        """Save the history (0600) and give the terminal back as it was found."""
        if self._readline is not None and self._history is not None:
            try:
                fd = os.open(self._history, os.O_WRONLY | os.O_CREAT, 0o600)
                os.close(fd)
                os.chmod(self._history, 0o600)
                self._readline.write_history_file(self._history)
            except OSError as exc:
                log.warning("could not save the console history %s: %s", self._history, exc)
        if self._terminal is not None:
            with contextlib.suppress(ImportError, OSError, ValueError):
                import termios  # as in open()

                termios.tcsetattr(self._stdin.fileno(), termios.TCSADRAIN, self._terminal)

    async def read_line(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self._interactive:
            return await self._read_terminal()
        raw: bytes = await in_daemon_thread(self._lines, MAX_LINE_BYTES)
        if not raw:
            return None
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        else:
            # An over-long line: drop the rest of it so it is not read as the next message.
            while raw and not raw.endswith(b"\n"):
                more: bytes = await in_daemon_thread(self._lines, MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw.decode("utf-8", errors="replace")

    async def _read_terminal(self) -> str | None:
        """One line from the terminal, read in a daemon thread (a Ctrl-C must not wait
        for Enter)."""

        def read() -> str | None:
            try:
                return input(PROMPT)
            except EOFError:
                return None
            except (OSError, ValueError, UnicodeDecodeError):  # the terminal went away
                return None

        return await in_daemon_thread(read)

    def banner(self, data_dir: str) -> None:
        """Greeting for an interactive session."""
        if self._interactive:
            self._out.write(
                f"soloops console — data in {data_dir}\n"
                "Type /help for commands, Ctrl-D or Ctrl-C to quit.\n"
            )
            self._out.flush()
