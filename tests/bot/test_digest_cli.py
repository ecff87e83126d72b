"""The digest and the event log from the command line, and the digest surviving a
SIGKILL in the middle of its delivery."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.bot.test_cli import SOLOOPS, run
from tests.harness.marker import home_env, kill_at_marker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_digest_killed_mid_delivery_is_delivered_once_after_restart(
    home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "delivering"
    row = int(
        kill_at_marker(
            "tests.harness.digest_worker",
            [str(marker)],
            home_env(home),
            marker,
            "started delivering the digest",
        )
    )
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state FROM outbox WHERE id = ?", (row,)).fetchone() == (
            "sending",
        )
    result = run(home, "chat", stdin="/runbook\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Daily digest, ") == 1
    [chart] = [line for line in result.stdout.splitlines() if line.startswith("📎 digest-")]
    assert Path(chart.split(": ", 1)[1]).read_bytes().startswith(PNG_MAGIC)
    again = run(home, "chat", stdin="/runbook\n")
    assert "Daily digest, " not in again.stdout
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state FROM outbox WHERE id = ?", (row,)).fetchone() == ("sent",)
        assert conn.execute("SELECT COUNT(*) FROM tasks WHERE kind = 'digest'").fetchone() == (1,)


def test_digest_print_shows_the_text_and_the_chart_without_starting(home: Path) -> None:
    assert run(home, "chat", stdin="/remember x\n").returncode == 0
    result = run(home, "digest", "--print")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Daily digest, ")
    assert "• notes: 1 done, 0 failed, 0 actions" in result.stdout
    chart = result.stdout.strip().splitlines()[-1]
    assert chart.startswith("Chart: ")
    assert Path(chart.removeprefix("Chart: ")).read_bytes().startswith(PNG_MAGIC)
    with sqlite3.connect(home / "soloops.db") as conn:  # nothing started: no new events
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events ORDER BY seq DESC LIMIT 1")]
    assert kinds == ["system.stopped"]
    assert "use soloops digest --print" in run(home, "digest").stderr


def test_digest_print_without_a_home_says_so(home: Path) -> None:
    result = run(home, "digest", "--print")
    assert result.returncode == 1
    assert "there is no soloops database" in result.stderr


def test_events_by_subject(home: Path) -> None:
    assert run(home, "chat", stdin="/remember x\n/remember y\n").returncode == 0
    result = run(home, "events", "--subject", "task:2", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and {e["subject"] for e in events} == {"task:2"}
    assert events[0]["kind"] == "task.queued"


def test_events_follow_prints_new_events_until_interrupted(home: Path) -> None:
    assert run(home, "chat", stdin="/remember x\n").returncode == 0
    follower = subprocess.Popen(
        [SOLOOPS, "events", "--follow", "--kind", "memory"],
        env=home_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline().decode()  # the existing one, printed at once
        assert "\tmemory.written\t" in first
        assert run(home, "chat", stdin="/remember y\n").returncode == 0
        second = follower.stdout.readline().decode()  # blocks until the follower prints it
        assert "\tmemory.written\t" in second and second != first
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
        assert follower.stderr is not None and follower.stderr.read() == b""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()


def test_events_follow_ends_quietly_when_its_reader_goes_away(home: Path) -> None:
    assert run(home, "chat", stdin="/remember x\n").returncode == 0
    follower = subprocess.Popen(
        [SOLOOPS, "events", "--follow"],
        env=home_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert follower.stdout is not None and follower.stderr is not None
    follower.stdout.readline()
    follower.stdout.close()  # like `| head -1` exiting
    # The next write fails with EPIPE: make one happen.
    assert run(home, "chat", stdin="/remember y\n").returncode == 0
    try:
        code = follower.wait(timeout=30)
        errors = follower.stderr.read().decode()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        follower.stderr.close()
    assert code == 141  # 128 + SIGPIPE, as for `soloops events | head`
    assert "Traceback" not in errors and "BrokenPipe" not in errors
