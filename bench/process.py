"""Whole-process benchmarks: ``soloops chat`` as a subprocess with piped stdin.

Each run gets a fresh data directory (a new user's first start), the environment
without the caller's ``SOLOOPS_*`` settings, and is reaped with ``os.wait4`` so its own
peak RSS (``ru_maxrss``) is read, not the maximum over every child so far.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def command() -> list[str]:
    """The installed ``soloops`` script next to this interpreter, else ``-m bot.cli``."""
    script = Path(sys.executable).with_name("soloops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


@dataclass(frozen=True, slots=True)
class Run:
    first_reply_s: float
    total_s: float
    peak_rss_mb: float
    lines: int


def chat(script: bytes, home: Path | None = None) -> Run:
    """Pipe ``script`` into ``soloops chat``; time the first reply and the whole run."""
    with tempfile.TemporaryDirectory(prefix="soloops-bench-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
        env["SOLOOPS_HOME"] = str(home or Path(scratch) / "home")
        began = time.perf_counter()
        proc = subprocess.Popen(
            [*command(), "chat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        proc.stdin.write(script)
        proc.stdin.close()
        first = proc.stdout.readline()
        first_s = time.perf_counter() - began
        rest = proc.stdout.read()
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        total_s = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode or not first:
            raise RuntimeError(f"soloops chat exited {proc.returncode}: {errors.decode()[-500:]}")
        lines = 1 + rest.count(b"\n")
        return Run(first_s, total_s, usage.ru_maxrss / 1024, lines)


def throughput(n: int) -> tuple[Run, float]:
    """A first start (a scripted ``/help`` into a new data directory), and the messages/s
    of ``printf '/help\\n' * n | soloops chat`` there, start-up taken out by subtracting
    a one-message run in the same data directory."""
    with tempfile.TemporaryDirectory(prefix="soloops-bench-") as scratch:
        home = Path(scratch) / "home"
        fresh = chat(b"/help\n", home)  # also creates and migrates the database
        one = chat(b"/help\n", home)
        many = chat(b"/help\n" * n, home)
    extra = many.total_s - one.total_s
    return fresh, ((n - 1) / extra if extra > 0 else n / many.total_s)
