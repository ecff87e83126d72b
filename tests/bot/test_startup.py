"""Start-up stays light: a scripted ``/help`` never loads the model or heavy libraries.

``soloops chat`` runs in a subprocess exactly as the command does (``bot.cli.main``), a
fresh data directory, ``/help`` on stdin; after it returns, the same interpreter writes
the names of the modules it imported. What was never imported cannot have cost time or
memory, so this holds on a loaded machine too (no timing here).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from bot.cli import _PLAIN_STARTS, build_parser
from config.version import VERSION
from connectors.webhook import USER_AGENT

# Run in the child: the command itself, then what it imported.
PROBE = """
import gc, json, os, sys
from bot.cli import main
status = main(["chat"])
from pydantic.plugin import _loader
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"status": status, "modules": sorted(sys.modules), "collecting": gc.isenabled(),
               "frozen": gc.get_freeze_count(),
               "plugins_env": os.environ.get("PYDANTIC_DISABLE_PLUGINS"),
               "plugins_searched": _loader._plugins is not None}, out)
"""

# Needed by no reply to /help: the model and its stack, the vector index, the HTTP
# clients and server, PDF, charts, money formatting, date parsing, metrics, and the
# platform front ends the console does not run.
HEAVY = (
    "telegram",
    "slack_sdk",
    "slack_bolt",
    "bot.slack_inbound",
    "bot.telegram",
    "torch",
    "sentence_transformers",
    "transformers",
    "faiss",
    "numpy",
    "httpx",
    "aiohttp",
    "babel",
    "matplotlib",
    "fpdf",
    "dateparser",
    "prometheus_client",
    "scipy",
    # Feature internals a /help does not reach: loaded where an invoice, a reminder's
    # time, a digest, /today, /runbook or a voice note is handled.
    "agents.invoice_grammar",
    "agents.invoice_texts",
    "agents.invoice_pdf",
    "agents.money",
    "agents.payment_reminders",
    "agents.when",
    "agents.digest_compose",
    "agents.digest_chart",
    "config.runbooks",
    "memory.digest_facts",
    "memory.reports",
    "memory.snapshot",
    "connectors.transcribe",
    # Standard library a /help does not use: "did you mean" for a mistyped command, and
    # the metadata parser of importlib.metadata.version (config/version.py instead).
    "difflib",
    "email.parser",
    "email.feedparser",
)


def _probe(
    tmp_path: Path, script: bytes, env_extra: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Run the command in a child; its stdout and what the probe wrote about it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SOLOOPS_") and k != "PYDANTIC_DISABLE_PLUGINS"
    }
    env["SOLOOPS_HOME"] = str(tmp_path / "home")
    env.update(env_extra or {})
    dump = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(dump)],
        input=script,
        capture_output=True,
        env=env,
        timeout=300,  # a safety net only: the run takes about a second
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    found: dict[str, Any] = json.loads(dump.read_text(encoding="utf-8"))
    assert found["status"] == 0
    return proc.stdout.decode(), found


def _chat(tmp_path: Path, script: bytes) -> tuple[str, set[str]]:
    reply, found = _probe(tmp_path, script)
    # The collector, paused while the command's modules load (bot/startup.py), runs
    # again, with the start-up's objects frozen out of its passes.
    assert found["collecting"] is True
    assert found["frozen"] > 10_000
    names = set(found["modules"])
    return reply, names | {name.split(".")[0] for name in names}


def test_a_scripted_help_loads_no_model_and_no_heavy_library(tmp_path: Path) -> None:
    reply, imported = _chat(tmp_path, b"/help\n")
    assert "/remember" in reply  # the help text was delivered
    assert sorted(imported & set(HEAVY)) == []


def test_the_model_loads_when_memory_first_needs_it(tmp_path: Path) -> None:
    # The same probe around a /recall, which searches by meaning: the model loads then
    # (torch with it), so the empty set above means "not imported", not "unseen".
    reply, imported = _chat(tmp_path, b"/help\n/recall what did I note about torch\n")
    assert "/remember" in reply
    assert {"torch", "numpy", "faiss"} <= imported


def test_the_deferred_feature_parts_load_when_their_command_comes(tmp_path: Path) -> None:
    # The feature internals kept out of a /help start are imported by the commands that
    # use them, in the same process, and those commands answer.
    reply, imported = _chat(tmp_path, b"/help\n/runbook\n/today\n/invoices\n/remind list\n")
    assert "Runbooks (show one with /runbook <kind>)" in reply
    assert {
        "config.runbooks",
        "agents.digest_compose",
        "memory.digest_facts",
        "memory.reports",
        "agents.invoice_grammar",
        "agents.invoice_texts",
    } <= imported


def test_a_mistyped_command_still_gets_its_suggestion(tmp_path: Path) -> None:
    # difflib, kept out of a /help start, is imported for the "did you mean" of the
    # grammar and of /help <topic>.
    reply, imported = _chat(tmp_path, b"/hepl\n/help remembr\n")
    assert "Unknown command /hepl. Did you mean /help?" in reply
    assert "No command /remembr. Did you mean /remember?" in reply
    assert "difflib" in imported


def test_a_collector_paused_by_the_caller_stays_paused() -> None:
    # bot.startup resumes only the collector it paused itself.
    probe = "import gc; gc.disable(); import bot.cli; print(gc.isenabled(), gc.get_freeze_count())"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=300, check=True, text=True
    )
    assert done.stdout.split() == ["False", "0"]


def test_pydantic_plugins_are_not_searched_unless_the_environment_asks(tmp_path: Path) -> None:
    # Searching reads every installed distribution's entry points (bot/startup.py).
    reply, found = _probe(tmp_path / "off", b"/help\n")
    assert "/remember" in reply
    assert (found["plugins_env"], found["plugins_searched"]) == ("__all__", False)
    # An operator's own setting is kept: empty means "search", and pydantic does.
    reply, found = _probe(tmp_path / "on", b"/help\n", {"PYDANTIC_DISABLE_PLUGINS": ""})
    assert "/remember" in reply
    assert (found["plugins_env"], found["plugins_searched"]) == ("", True)


def test_the_started_event_names_the_version_pyproject_declares(tmp_path: Path) -> None:
    # config/version.py is a constant (no metadata lookup at start): it must follow pyproject.
    root = Path(__file__).resolve().parents[2]
    declared = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert declared["project"]["version"] == VERSION
    _chat(tmp_path, b"/help\n")
    conn = sqlite3.connect(tmp_path / "home" / "soloops.db")
    try:
        (payload,) = conn.execute(
            "SELECT payload FROM events WHERE kind = 'system.started'"
        ).fetchone()
    finally:
        conn.close()
    assert json.loads(payload) == {"version": VERSION, "mode": "chat"}
    # The same version everywhere soloops names itself.
    assert f"soloops/{VERSION}" == USER_AGENT
    shown = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert shown.stdout == f"soloops {VERSION}\n"


def test_the_plain_starts_skip_only_a_parser_that_would_read_nothing() -> None:
    # `soloops`, `soloops run` and `soloops chat` go straight to the runtime
    # (bot/cli.py _PLAIN_STARTS): the parser would give the same command and no option.
    for argv, command in _PLAIN_STARTS.items():
        parsed = vars(build_parser().parse_args(list(argv)))
        assert (parsed.pop("command") or "run") == command
        assert parsed == {"version": None}  # --version not given
    # Anything else is still read by the parser (and refused there when wrong).
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat", "--nope"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "unrecognized arguments: --nope" in done.stderr
