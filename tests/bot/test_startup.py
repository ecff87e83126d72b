"""Start-up stays light: a scripted ``/help`` never loads the model or heavy libraries.

``soloops chat`` runs in a subprocess exactly as the command does (``bot.cli.main``), a
fresh data directory, ``/help`` on stdin; after it returns, the same interpreter writes
the names of the modules it imported. What was never imported cannot have cost time or
memory, so this holds on a loaded machine too (no timing here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Run in the child: the command itself, then what it imported.
PROBE = """
import gc, json, sys
from bot.cli import main
status = main(["chat"])
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"status": status, "modules": sorted(sys.modules), "collecting": gc.isenabled(),
               "frozen": gc.get_freeze_count()}, out)
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
)


def _chat(tmp_path: Path, script: bytes) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env["SOLOOPS_HOME"] = str(tmp_path / "home")
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
    found = json.loads(dump.read_text(encoding="utf-8"))
    assert found["status"] == 0
    # The collector, paused while the command's modules load (bot/startup.py), runs
    # again, with the start-up's objects frozen out of its passes.
    assert found["collecting"] is True
    assert found["frozen"] > 10_000
    names = set(found["modules"])
    return proc.stdout.decode(), names | {name.split(".")[0] for name in names}


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


def test_a_collector_paused_by_the_caller_stays_paused() -> None:
    # bot.startup resumes only the collector it paused itself.
    probe = "import gc; gc.disable(); import bot.cli; print(gc.isenabled(), gc.get_freeze_count())"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=300, check=True, text=True
    )
    assert done.stdout.split() == ["False", "0"]
