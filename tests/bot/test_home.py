"""The home: one instance at a time, private files, history that cannot silently vanish,
backups of a live database (issue 10 items 1, 5, 9, 20)."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.test_cli import SOLOOPS, run


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def running(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``soloops chat`` that is up (it answered a line) and holds the home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env["SOLOOPS_HOME"] = str(home)
    proc = subprocess.Popen(
        [SOLOOPS, "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"/remember first instance note\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"Remembered #1.\n"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_second_instance_is_refused_and_touches_nothing(
    home: Path, running: subprocess.Popen[bytes]
) -> None:
    db = home / "soloops.db"
    started = "SELECT COUNT(*) FROM events WHERE kind = 'system.started'"
    assert _count(db, started) == 1
    second = run(home, "chat", stdin="/remember from the second one\n")
    assert second.returncode != 0
    assert f"soloops is already running on {home} (pid {running.pid})" in second.stderr
    assert f"kill {running.pid}" in second.stderr
    assert second.stdout == ""
    again = run(home, "run", stdin="")
    assert again.returncode != 0 and f"pid {running.pid}" in again.stderr
    # The running instance goes on writing; the refused ones wrote nothing at all.
    assert _count(db, started) == 1
    assert _count(db, "SELECT COUNT(*) FROM inbound WHERE text LIKE '%second one%'") == 0
    # Read-only commands keep working beside it.
    events = run(home, "events", "--kind", "memory")
    assert events.returncode == 0 and "memory.written" in events.stdout
    doctor = run(home, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    backup = run(home, "backup", str(home.parent / "live.db"))
    assert backup.returncode == 0, backup.stderr
    assert _count(home.parent / "live.db", "SELECT COUNT(*) FROM memories") == 1


def test_the_lock_is_free_again_after_a_stop(home: Path) -> None:
    assert run(home, "chat", stdin="/remember one\n").returncode == 0
    later = run(home, "chat", stdin="/remember two\n")
    assert later.returncode == 0, later.stderr
    assert later.stdout == "Remembered #2.\n"


def test_a_fresh_home_is_private(home: Path) -> None:
    result = run(home, "chat", stdin="/remember secret plans\n")
    assert result.returncode == 0, result.stderr
    assert _mode(home) == 0o700
    assert _mode(home / "logs") == 0o700
    files = [home / "soloops.db", home / "soloops.head", home / "logs" / "soloops.log"]
    files += list(home.glob("soloops.db-*"))
    for path in files:
        assert _mode(path) == 0o600, path


def test_an_existing_readable_home_is_tightened_and_logged(home: Path) -> None:
    assert run(home, "chat", stdin="/remember x\n").returncode == 0
    (home / "soloops.db").chmod(0o644)
    home.chmod(0o755)
    warned = run(home, "doctor")
    assert "data directory: " in warned.stdout and "readable by other users (755)" in warned.stdout
    assert run(home, "chat", stdin="/notes\n").returncode == 0
    assert _mode(home / "soloops.db") == 0o600
    assert _mode(home) == 0o700
    log = (home / "logs" / "soloops.log").read_text()
    assert "made private to their owner" in log and "soloops.db" in log


def test_doctor_warns_about_readable_secrets(home: Path, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secrets.chmod(0o700)
    token = secrets / "telegram__token"
    token.write_text("123:abc")
    token.chmod(0o644)
    result = run(home, "doctor", env={"SOLOOPS_SECRETS_DIR": str(secrets)})
    assert f"secret file: {token} is readable by other users (644)" in result.stdout
    assert f"chmod 600 {token}" in result.stdout
    assert "secrets directory" not in result.stdout
    assert "123:abc" not in result.stdout


def test_an_emptied_database_is_refused_with_a_way_back(home: Path) -> None:
    assert run(home, "chat", stdin="/remember keep me\n").returncode == 0
    (home / "soloops.db").write_bytes(b"")
    doctor = run(home, "doctor")
    assert doctor.returncode == 1
    assert "database history" in doctor.stdout and "Backup and restore" in doctor.stdout
    assert "All good" not in doctor.stdout
    for command in ("chat", "run"):
        refused = run(home, command, stdin="/remember new life\n")
        assert refused.returncode != 0
        assert "missing or empty, but soloops recorded" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert refused.stdout == ""
    assert (home / "soloops.db").stat().st_size == 0  # nothing written over it


def test_a_replaced_database_is_refused(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert run(other, "chat", stdin="/remember another life\n/remember more\n").returncode == 0
    assert run(home, "chat", stdin="/remember mine\n").returncode == 0
    (home / "soloops.db").write_bytes((other / "soloops.db").read_bytes())
    refused = run(home, "chat", stdin="/notes\n")
    assert refused.returncode != 0
    assert "is not the one soloops last ran on" in refused.stderr


def test_a_truncated_database_is_a_clear_error_not_a_hang(home: Path) -> None:
    script = "".join(
        f"/remember note number {n} with some words to fill pages\n" for n in range(40)
    )
    assert run(home, "chat", stdin=script).returncode == 0
    db = home / "soloops.db"
    size = db.stat().st_size
    with db.open("r+b") as handle:
        handle.truncate(size // 2)
    for command in ("doctor", "chat", "run"):
        result = run(home, command, stdin="/notes\n")  # run() times out rather than hang
        assert result.returncode != 0, command
        text = result.stdout + result.stderr
        assert "is damaged" in text, command
        assert "Traceback" not in text, command


def test_garbage_instead_of_a_database_without_an_anchor(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "soloops.db").write_bytes(b"this is not sqlite at all" * 200)
    for command in ("doctor", "chat"):
        result = run(home, command, stdin="/notes\n")
        assert result.returncode != 0
        text = result.stdout + result.stderr
        assert "file is not a database" in text and "Traceback" not in text


def test_backup_of_a_home_restores_and_refuses_to_overwrite(home: Path, tmp_path: Path) -> None:
    assert run(home, "chat", stdin="/remember invoices go out on the 1st\n").returncode == 0
    target = tmp_path / "backup.db"
    made = run(home, "backup", str(target))
    assert made.returncode == 0, made.stderr
    assert "Backed up" in made.stdout
    assert _mode(target) == 0o600
    assert (tmp_path / "backup.head").is_file()
    again = run(home, "backup", str(target))
    assert again.returncode == 1 and "--force" in again.stderr
    assert run(home, "backup", str(target), "--force").returncode == 0
    # Lose the home, restore it as the README says: copy both files back.
    assert run(home, "chat", stdin="/remember later note\n").returncode == 0
    (home / "soloops.db").write_bytes(b"")
    restored_db, restored_head = home / "soloops.db", home / "soloops.head"
    restored_db.write_bytes(target.read_bytes())
    restored_head.write_bytes((tmp_path / "backup.head").read_bytes())
    doctor = run(home, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    recalled = run(home, "chat", stdin="/notes\n")
    assert recalled.returncode == 0, recalled.stderr
    assert "invoices go out on the 1st" in recalled.stdout
    assert "later note" not in recalled.stdout


def test_backup_without_a_database_says_so(home: Path, tmp_path: Path) -> None:
    result = run(home, "backup", str(tmp_path / "b.db"))
    assert result.returncode == 1
    assert "there is no database to back up" in result.stderr
