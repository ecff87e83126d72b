"""A worker's signal to its test: a small file that appears whole or not at all, and
the test's side: run the worker until it signals, then SIGKILL it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_marker(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a test polling for the file never reads it
    half-written (created, but its text not yet in it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def home_env(home: Path) -> dict[str, str]:
    """This process's environment without its SOLOOPS_ settings, with ``home`` as the
    worker's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env["SOLOOPS_HOME"] = str(home)
    return env


def kill_at_marker(
    module: str, args: list[str], env: Mapping[str, str], marker: Path, what: str
) -> str:
    """Run ``python -m module *args`` until it writes ``marker`` (it reached the point
    it was written for), SIGKILL it there, and return the marker's text. Fails with the
    worker's stderr if it exits first, and after a minute as a safety net."""
    worker = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert worker.stderr is not None
    deadline = time.monotonic() + 60
    try:
        while not marker.exists():
            assert time.monotonic() < deadline, f"the worker never {what}"
            try:
                worker.wait(timeout=0.02)  # its exit ends the wait at once
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(
                f"the worker exited ({worker.returncode}) before it {what}:\n"
                + worker.stderr.read().decode()[-3000:]
            )
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        worker.stderr.close()
    return marker.read_text(encoding="utf-8")
