"""The console in a real terminal (issue 10 item 13): ``soloops chat`` on a pty.

Up-arrow recalls the last line (readline, history kept 0600 in the home), a paste
longer than the terminal's line limit is read whole, and Ctrl-C at an idle prompt
ends the session at once with the terminal's settings restored. The piped mode
keeps its behaviour: no readline, no history, the same bytes out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import sqlite3
import stat
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SOLOOPS = str(Path(sys.executable).with_name("soloops"))
DEADLINE_S = 60.0  # a safety net: every wait ends as soon as the output is there
UP = b"\x1b[A"
CTRL_C = b"\x03"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update({"SOLOOPS_HOME": str(home), "TERM": "xterm", "COLUMNS": "80", "LINES": "24"})
    return env


def _controlling_tty() -> None:
    """In the child (a new session): make the pty its controlling terminal, so
    Ctrl-C on it raises SIGINT as in a real terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The master side of a pty with ``soloops chat`` on the other end."""

    def __init__(self, home: Path) -> None:
        self.fd, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.initial = termios.tcgetattr(slave)
        self.proc = subprocess.Popen(
            [SOLOOPS, "chat"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(home),
            start_new_session=True,
            preexec_fn=_controlling_tty,  # before exec: the child needs a controlling tty
        )
        os.close(slave)
        os.set_blocking(self.fd, False)
        self.output = b""
        self._seen = 0

    def _pump(self, timeout: float, *, writing: bytes = b"") -> int:
        """Read what is there (waiting up to ``timeout``); write some of ``writing``."""
        readable, writable, _ = select.select([self.fd], [self.fd] if writing else [], [], timeout)
        if readable:
            with contextlib.suppress(OSError):  # EIO: the child closed its side
                self.output += os.read(self.fd, 65536)
        if writable:
            try:
                return os.write(self.fd, writing[:1024])
            except BlockingIOError:
                return 0
        return 0

    def send(self, data: bytes) -> None:
        """Type ``data``, draining the echo meanwhile so neither side blocks."""
        deadline = time.monotonic() + DEADLINE_S
        while data:
            assert time.monotonic() < deadline, "the terminal stopped taking input"
            data = data[self._pump(1.0, writing=data) :]

    def expect(self, needle: bytes) -> None:
        """Wait until ``needle`` appears in output not yet matched."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            found = self.output.find(needle, self._seen)
            if found >= 0:
                self._seen = found + len(needle)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and not self._more()):
                raise AssertionError(f"no {needle!r} in output: {self.output[-2000:]!r}")
            self._pump(min(remaining, 1.0))

    def _more(self) -> bool:
        before = len(self.output)
        self._pump(0)
        return len(self.output) > before

    def wait_exit(self) -> int:
        deadline = time.monotonic() + DEADLINE_S
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running: {self.output[-500:]!r}"
            self._pump(0.2)
        while self._more():
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    opened = Terminal(tmp_path / "home")
    try:
        yield opened
    finally:
        opened.close()


def test_up_arrow_recalls_a_long_paste_is_read_whole_and_ctrl_c_quits(
    terminal: Terminal, tmp_path: Path
) -> None:
    terminal.expect(b"Ctrl-C to quit")
    terminal.expect(b"> ")
    terminal.send(b"/remember alpha\r")
    terminal.expect(b"Remembered #1.")
    terminal.expect(b"> ")
    terminal.send(UP + b"\r")  # the same line again, from the history
    terminal.expect(b"Remembered #2.")
    terminal.expect(b"> ")
    pasted = b"/remember " + b"p" * 6000 + b" END"  # past the tty's 4096-byte line limit
    terminal.send(pasted + b"\r")
    terminal.expect(b"Remembered #3.")
    terminal.expect(b"> ")
    terminal.send(CTRL_C)  # at an idle prompt: no Enter needed
    assert terminal.wait_exit() == 0
    assert b"unreadable" not in terminal.output and b"not readable text" not in terminal.output
    assert b"^[[A" not in terminal.output
    assert b"Traceback" not in terminal.output

    home = tmp_path / "home"
    with sqlite3.connect(home / "soloops.db") as conn:
        texts = [t for (t,) in conn.execute("SELECT text FROM memories ORDER BY id")]
    assert texts[:2] == ["alpha", "alpha"]
    assert texts[2] == pasted.decode().removeprefix("/remember ")  # whole, nothing cut
    history = home / "console_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "/remember alpha" in history.read_text()
    # The terminal is handed back as it was found: line mode, echo on.
    restored = termios.tcgetattr(terminal.fd)
    assert restored[3] & (termios.ICANON | termios.ECHO) == terminal.initial[3] & (
        termios.ICANON | termios.ECHO
    )


def test_history_is_there_in_the_next_session(tmp_path: Path) -> None:
    first = Terminal(tmp_path / "home")
    try:
        first.expect(b"> ")
        first.send(b"/remember from yesterday\r")
        first.expect(b"Remembered #1.")
        first.expect(b"> ")
        first.send(b"\x04")  # Ctrl-D
        assert first.wait_exit() == 0
    finally:
        first.close()
    second = Terminal(tmp_path / "home")
    try:
        second.expect(b"> ")
        second.send(UP + b"\r")
        second.expect(b"Remembered #2.")
        second.expect(b"> ")
        second.send(CTRL_C)
        assert second.wait_exit() == 0
    finally:
        second.close()


def test_piped_mode_is_unchanged(tmp_path: Path) -> None:
    """No readline when stdin is a pipe: escape bytes are still refused as typed, no
    prompt or terminal codes appear, and no history file is written."""
    home = tmp_path / "home"
    script = b"/remember x\n" + UP + b"\n/notes\n"
    result = subprocess.run(
        [SOLOOPS, "chat"], input=script, capture_output=True, env=_env(home), timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "Remembered #1."
    assert lines[1] == (
        "⚠ That message has bytes that are not readable text (control characters or "
        "invalid UTF-8). Nothing was run. Send plain text."
    )
    assert lines[2].endswith(") x")
    assert len(lines) == 3
    assert b"\x1b" not in result.stdout and b"> " not in result.stdout
    assert not (home / "console_history").exists()
