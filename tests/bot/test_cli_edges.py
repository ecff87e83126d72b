"""The CLI's rough edges (issue 10 items 8 and 14), run as real subprocesses.

Secrets: whatever the command prints, logs or stores, a secret value never appears
in it, even when the variable holding it is misspelled. Pipes: a reader that stops
early ends the command quietly. Unknown event kinds are named as such.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memory.events import EventLog
from memory.store import Store
from tests.emulators.telegram import TelegramEmulator

SOLOOPS = str(Path(sys.executable).with_name("soloops"))

TOKEN_TYPO = "987654:AAtypo-token-SECRET-1a2b3c"
SIGNING_TYPO = "typo-signing-secret-5d6e7f8a9b"
HOOK_TYPO = "typo-hook-secret-0c1d2e3f4a5b"
URL_TOKEN = "urltoken-7a8b9c0d1e2f"
HOOK_SECRET = "real-hook-secret-3f4a5b6c7d8e"
REFUSED_TOKEN = "555555:AArefused-token-9f8e7d6c5b"


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update({"SOLOOPS_HOME": str(home), "SOLOOPS_LOG_LEVEL": "DEBUG", **extra})
    return env


def run(
    home: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SOLOOPS, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(home, env or {}),
        timeout=120,
        check=False,
    )


def everything_written(home: Path, outputs: list[str]) -> str:
    """stdout and stderr of every run, the log files and a dump of the database."""
    parts = list(outputs)
    logs = home / "logs"
    if logs.is_dir():
        parts.extend(path.read_text(errors="replace") for path in sorted(logs.iterdir()))
    database = home / "soloops.db"
    if database.exists():
        with sqlite3.connect(database) as conn:
            parts.extend(conn.iterdump())
    return "\n".join(parts)


def hits(text: str, secrets: list[str]) -> dict[str, int]:
    return {secret: text.count(secret) for secret in secrets if secret in text}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SOLOOPS_TELEGRAM__TOKN", TOKEN_TYPO),
        ("SOLOOPS_SLACK__SIGNING_SECRT", SIGNING_TYPO),
        ("SOLOOPS_HOOKS__CRM__SECERT", HOOK_TYPO),
    ],
)
def test_a_misspelled_secret_variable_is_named_not_echoed(
    tmp_path: Path, variable: str, value: str
) -> None:
    home = tmp_path / "home"
    env = {variable: value}
    if "HOOKS" in variable:
        env["SOLOOPS_HOOKS__CRM__URL"] = f"https://crm.example/in?token={URL_TOKEN}"
    outputs: list[str] = []
    for command in ("doctor", "chat", "events", "run"):
        result = run(home, command, stdin="/status\n", env=env)
        assert result.returncode != 0, (command, result.stdout, result.stderr)
        assert variable in result.stdout + result.stderr, command  # named, so it can be fixed
        assert "Traceback" not in result.stderr
        outputs += [result.stdout, result.stderr]
    assert hits(everything_written(home, outputs), [value, URL_TOKEN]) == {}


def test_a_hook_url_with_a_token_is_not_echoed_by_a_settings_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        "SOLOOPS_HOOKS__CRM__URL": f"ftp://crm.example/in?token={URL_TOKEN}",
        "SOLOOPS_HOOKS__CRM__SECRET": HOOK_SECRET,
    }
    doctor = run(home, "doctor", env=env)
    chat = run(home, "chat", env=env)
    assert doctor.returncode == 1 and chat.returncode == 2
    assert "SOLOOPS_HOOKS__CRM__URL" in chat.stderr
    assert "ftp://crm.example/in" in chat.stderr  # enough of it to see the mistake
    written = everything_written(home, [doctor.stdout, doctor.stderr, chat.stdout, chat.stderr])
    assert hits(written, [URL_TOKEN, HOOK_SECRET]) == {}


def test_configured_secrets_stay_out_of_output_log_and_database(tmp_path: Path) -> None:
    """A session that uses a hook (approval, delivery attempt) at DEBUG log level."""
    home = tmp_path / "home"
    env = {
        # Port 9 (discard) on loopback: the delivery fails, and its failure is logged.
        "SOLOOPS_HOOKS__CRM__URL": f"http://127.0.0.1:9/in?token={URL_TOKEN}",
        "SOLOOPS_HOOKS__CRM__SECRET": HOOK_SECRET,
        "SOLOOPS_TELEGRAM__WEBHOOK_SECRET": "webhooksecret-4b5c6d",
    }
    first = run(home, "chat", stdin="/hook crm new lead Jane\n", env=env)
    assert first.returncode == 0, first.stderr
    code = re.search(r"/approve (\w+)", first.stdout)
    assert code is not None, first.stdout
    second = run(home, "chat", stdin=f"/approve {code[1]}\n/status\n/events\n", env=env)
    assert second.returncode == 0, second.stderr
    events = run(home, "events", "--json", env=env)
    doctor = run(home, "doctor", env=env)
    outputs = [r.stdout + r.stderr for r in (first, second, events, doctor)]
    written = everything_written(home, outputs)
    assert "could not reach hook 'crm'" in written  # the hook was really used
    assert hits(written, [URL_TOKEN, HOOK_SECRET, "webhooksecret-4b5c6d"]) == {}


async def test_a_refused_telegram_token_is_not_printed(
    tmp_path: Path, telegram_api: TelegramEmulator
) -> None:
    home = tmp_path / "home"
    env = _env(
        home,
        {
            "SOLOOPS_TELEGRAM__TOKEN": REFUSED_TOKEN,
            "SOLOOPS_TELEGRAM__BASE_URL": telegram_api.base_url,
            "SOLOOPS_TELEGRAM__BASE_FILE_URL": telegram_api.base_file_url,
        },
    )
    proc = await asyncio.create_subprocess_exec(
        SOLOOPS,
        "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2
    stderr = err.decode()
    assert "Telegram refused the bot token" in stderr
    assert "SOLOOPS_TELEGRAM__TOKEN" in stderr
    written = everything_written(home, [out.decode(), stderr])
    assert hits(written, [REFUSED_TOKEN, REFUSED_TOKEN.split(":")[1]]) == {}


# -- events ------------------------------------------------------------------


async def _fill_events(home: Path, count: int) -> None:
    async with Store.open(home / "soloops.db") as store:
        log = EventLog(store)
        for index in range(count):
            await log.record("test.filler", actor="test", payload={"n": index, "pad": "x" * 200})


async def test_events_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    await _fill_events(home, 3000)  # ~750 kB: far more than a pipe buffers
    proc = await asyncio.create_subprocess_exec(
        SOLOOPS,
        "events",
        "--json",
        env=_env(home, {}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert b'"test.filler"' in first
    # Close our end, as `head -1` does after its line.
    transport = proc._transport  # type: ignore[attr-defined]  # asyncio keeps it private
    transport.get_pipe_transport(1).close()
    stderr = await asyncio.wait_for(proc.stderr.read(), 60)
    status = await asyncio.wait_for(proc.wait(), 60)
    assert status == 141, stderr
    assert stderr == b""


def test_events_with_an_unknown_kind_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "chat", stdin="/remember a\n").returncode == 0
    result = run(home, "events", "--kind", "nosuch")
    assert result.returncode == 2
    assert "no event of kind 'nosuch'" in result.stderr
    assert "memory" in result.stderr and "task" in result.stderr  # the known prefixes
    known = run(home, "events", "--kind", "memory.written")
    assert known.returncode == 0 and "memory.written" in known.stdout
    prefix = run(home, "events", "--kind", "task")
    assert prefix.returncode == 0 and "task.queued" in prefix.stdout
    nothing_new = run(home, "events", "--kind", "memory", "--since", "2999-01-01")
    assert (nothing_new.returncode, nothing_new.stdout) == (0, "")


@pytest.mark.parametrize("command", ["run", "chat", "doctor", "events"])
def test_help_names_the_home_and_config_variables(command: str, tmp_path: Path) -> None:
    result = run(tmp_path / "home", command, "--help")
    assert result.returncode == 0
    assert "SOLOOPS_HOME" in result.stdout
    assert "SOLOOPS_CONFIG" in result.stdout


def test_a_crash_traceback_is_redacted(tmp_path: Path) -> None:
    """The last resort: even an unforeseen exception's text is redacted on stderr."""
    token = "424242:AAcrash-token-0a9b8c7d6e"
    crash = (
        "import bot.cli as cli\n"
        "def boom(**_):\n"
        f"    raise RuntimeError('could not use {token}')\n"
        "cli._doctor = boom\n"
        "raise SystemExit(cli.main(['doctor']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", crash],
        capture_output=True,
        text=True,
        env=_env(tmp_path / "home", {"SOLOOPS_TELEGRAM__TOKEN": token}),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "RuntimeError: could not use [redacted]" in result.stderr
    assert token not in result.stderr + result.stdout
