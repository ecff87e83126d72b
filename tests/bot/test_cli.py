"""The `soloops` command, run as a real subprocess on a real data directory."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import parse_since
from tests.harness.marker import home_env, kill_at_marker

SOLOOPS = str(Path(sys.executable).with_name("soloops"))


def run(
    home: Path, *args: str, stdin: str | bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    full_env = home_env(home) | (env or {})
    proc = subprocess.run(
        [SOLOOPS, *args], input=data, capture_output=True, env=full_env, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_note_survives_into_a_new_process(home: Path) -> None:
    first = run(home, "chat", stdin="/remember Acme pays invoices on the 1st\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Remembered #1.\n"
    second = run(home, "chat", stdin="/recall acme\n")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("#1 (")
    assert "Acme pays invoices on the 1st" in second.stdout


def test_scripted_session_answers_every_line_in_order(home: Path) -> None:
    junk = b"\xff\xfe\x00binary\x01\n"
    script = (
        b"/remember x\n/frobnicate\n\n" + b"z" * 100_000 + b"\n" + junk + b'/forget "1\n/notes\n'
    )
    result = run(home, "run", stdin=script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Remembered #1."
    assert lines[1].startswith("⚠ Unknown command /frobnicate")
    assert lines[2].startswith("⚠ That message was empty")
    assert lines[3].startswith("⚠ That message is 100,000 characters")
    assert lines[4].startswith("⚠ That message has bytes that are not readable text")
    assert lines[5].startswith("⚠ /forget has an unbalanced quote")
    assert lines[6].endswith(") x")
    assert "Traceback" not in result.stdout + result.stderr


def test_events_json_lines(home: Path) -> None:
    run(home, "chat", stdin="/remember a\n/frobnicate\n")
    result = run(home, "events", "--json", "--since", "1h")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert "memory.written" in kinds
    assert "command.rejected" in kinds
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(
        {"seq", "ts", "kind", "actor", "subject", "payload", "hash"} <= set(e) for e in events
    )
    only = run(home, "events", "--json", "--kind", "command", "--limit", "1")
    [line] = only.stdout.splitlines()
    assert json.loads(line)["kind"] == "command.rejected"
    assert run(home, "events", "--since", "1h").stdout.count("\n") == len(events)
    assert run(home, "events", "--since", "2999-01-01").stdout == ""


def test_events_rejects_a_bad_since(home: Path) -> None:
    result = run(home, "events", "--since", "yesterday-ish")
    assert result.returncode == 2
    assert "use 30m, 24h, 7d" in result.stderr


def test_doctor_detects_an_edited_event(home: Path) -> None:
    run(home, "chat", stdin="/remember pay Bob 100 EUR\n")
    healthy = run(home, "doctor")
    assert healthy.returncode == 0, healthy.stdout
    assert "hash chain intact" in healthy.stdout
    conn = sqlite3.connect(home / "soloops.db")
    conn.executescript(
        "DROP TRIGGER events_no_update;"
        "UPDATE events SET actor = 'someone-else' WHERE kind = 'memory.written';"
    )
    conn.close()
    broken = run(home, "doctor")
    assert broken.returncode == 1
    assert "hash chain broken" in broken.stdout
    assert "was changed after it was written" in broken.stdout


def test_invalid_settings_name_the_setting_and_the_fix(home: Path) -> None:
    result = run(home, "chat", env={"SOLOOPS_COORDINATOR__CONCURRENCY": "lots"})
    assert result.returncode == 2
    assert "'coordinator.concurrency'" in result.stderr
    assert "SOLOOPS_COORDINATOR__CONCURRENCY" in result.stderr
    assert "Traceback" not in result.stderr
    doctor = run(home, "doctor", env={"SOLOOPS_CONFIG": "/nonexistent.toml"})
    assert doctor.returncode == 1
    assert "SOLOOPS_CONFIG names '/nonexistent.toml'" in doctor.stdout


def test_version() -> None:
    result = subprocess.run([SOLOOPS, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("soloops 0.")


def test_a_task_killed_mid_run_resumes_on_the_next_start(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    kill_at_marker(
        "tests.harness.blocking_worker",
        [str(marker), "survive the crash"],
        home_env(home),
        marker,
        "started the task",
    )
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state FROM tasks").fetchall() == [("running",)]
    result = run(home, "chat", stdin="/recall crash\n")
    assert result.returncode == 0, result.stderr
    # The interrupted task ran first (its reply reaches this console), then the recall.
    assert result.stdout.splitlines()[0] == "Remembered #1."
    assert "survive the crash" in result.stdout.splitlines()[1]
    with sqlite3.connect(home / "soloops.db") as conn:
        assert conn.execute("SELECT state, attempts FROM tasks WHERE id = 1").fetchone() == (
            "succeeded",
            2,
        )
        assert conn.execute("SELECT COUNT(*) FROM memories").fetchone() == (1,)
        kinds = [k for (k,) in conn.execute("SELECT kind FROM events WHERE subject = 'task:1'")]
    assert kinds == [
        "task.queued",
        "task.started",
        "task.requeued",
        "task.started",
        "task.succeeded",
    ]


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_parse_since_durations(text: str, delta: timedelta) -> None:
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert parse_since(text, now) == now - delta


def test_parse_since_iso() -> None:
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert parse_since("2026-11-01T09:00", now) == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert parse_since("2026-11-01T09:00+01:00", now) == datetime(2026, 11, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("command", ["chat", "run"])
def test_sigterm_stops_the_console_while_its_input_stays_open(home: Path, command: str) -> None:
    """Under a service manager stdin is often a pipe nobody writes to or closes: SIGTERM
    must still end soloops, not wait for a line that never comes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update({"SOLOOPS_HOME": str(home), "SOLOOPS_DIGEST__ENABLED": "false"})
    with subprocess.Popen(
        [SOLOOPS, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(b"/help\n")
            proc.stdin.flush()
            first = proc.stdout.readline()  # answered: the console is up and reading again
            assert first.startswith(b"Commands"), first
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)  # a safety net: before the fix it waited for EOF
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # The pipe stayed open while soloops stopped; the context closes it only now.
        errors = proc.stderr.read()
    assert code == 0, errors
