"""Whole-process benchmarks: ``soloops chat`` as a subprocess with piped stdin.

Each run gets a fresh data directory (a new user's first start), the environment
without the caller's ``SOLOOPS_*`` settings and the bytecode cached, and is started and
reaped (``os.wait4``) by a small measuring parent, so its own peak RSS
(``ru_maxrss``) is read: not the bench's, not the maximum over every child so far.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


# The measuring parent: a small interpreter between the bench and ``soloops chat``.
# Linux charges a child, at exec, the resident size of the process it was forked from
# (exec_mmap keeps the old mm's high-water mark in the child's ru_maxrss), and Python
# forks subprocesses from the caller: run straight from the bench, which holds the
# embedding model (~560 MB), every child "peaks" at the bench's size. From this ~10 MB
# parent the child's own peak shows. Timing happens here too, so the parent's own start
# is not counted.
_MEASURE = r"""
import json, os, subprocess, sys, time
script = sys.stdin.buffer.read()
began = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
proc.stdin.write(script)
proc.stdin.close()
first = proc.stdout.readline()
first_s = time.perf_counter() - began
rest = proc.stdout.read()
errors = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
json.dump({"first_s": first_s, "total_s": time.perf_counter() - began,
           "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime,
           "status": os.waitstatus_to_exitcode(status), "first": bool(first),
           "lines": (1 + rest.count(b"\n")) if first else 0,
           "errors": errors.decode(errors="replace")[-500:]}, sys.stdout)
"""


PYCACHE = Path(tempfile.gettempdir()) / "soloops-bench-pycache"


def chat(script: bytes, home: Path | None = None) -> Run:
    """Pipe ``script`` into ``soloops chat``; time the first reply and the whole run."""
    with tempfile.TemporaryDirectory(prefix="soloops-bench-") as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
        env["SOLOOPS_HOME"] = str(home or Path(scratch) / "home")
        # Bytecode cached, as an installed package has it (pip compiles at install):
        # without it every start compiles ~100 modules from source (~0.4 s here). The
        # cache lives outside the source tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        done = subprocess.run(
            [sys.executable, "-S", "-c", _MEASURE, *command(), "chat"],
            input=script,
            capture_output=True,
            env=env,
            check=True,
        )
        got = json.loads(done.stdout)
        if got["status"] or not got["first"]:
            raise RuntimeError(f"soloops chat exited {got['status']}: {got['errors']}")
        return Run(got["first_s"], got["total_s"], got["maxrss_kb"] / 1024, got["lines"])


def throughput(n: int) -> tuple[Run, float]:
    """A first start (a scripted ``/help`` into a new data directory), and the messages/s
    of ``printf '/help\\n' * n | soloops chat`` there, start-up taken out by subtracting
    a one-message run in the same data directory."""
    chat(b"/help\n")  # fills the bytecode cache; not measured
    with tempfile.TemporaryDirectory(prefix="soloops-bench-") as scratch:
        home = Path(scratch) / "home"
        fresh = chat(b"/help\n", home)  # also creates and migrates the database
        one = chat(b"/help\n", home)
        many = chat(b"/help\n" * n, home)
    extra = many.total_s - one.total_s
    return fresh, ((n - 1) / extra if extra > 0 else n / many.total_s)
