"""``python -m bench --quick``: every benchmark runs at a tiny size and reports in shape.

Structure only, never timings: the numbers of a quick run on a busy machine mean
nothing, and a test that can fail under load is a broken test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench.run import GROUPS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_results_name_the_machine(quick_run: tuple[dict[str, Any], str]) -> None:
    machine = quick_run[0]["machine"]
    assert machine["nproc"] >= 1
    assert machine["cpu"] and machine["python"].startswith("3.")
    assert machine["sqlite"].count(".") == 2
    assert quick_run[0]["options"]["quick"] is True


@pytest.mark.slow
def test_every_group_reports_and_none_failed(quick_run: tuple[dict[str, Any], str]) -> None:
    rows = quick_run[0]["rows"]
    assert {row["group"] for row in rows} == set(GROUPS)
    failed = [row for row in rows if (row["skipped"] or "").startswith("failed")]
    assert failed == []


@pytest.mark.slow
def test_each_row_is_in_shape(quick_run: tuple[dict[str, Any], str]) -> None:
    for row in quick_run[0]["rows"]:
        assert row["name"] and row["unit"], row
        assert row["met"] in ("yes", "no", "n/a"), row
        if row["skipped"]:
            assert row["value"] is None and row["met"] == "n/a", row
            continue
        spread = row["rounds"]
        assert spread["n"] >= 1
        assert spread["min"] <= spread["median"] <= spread["max"], row
        assert row["value"] == spread["median"] and row["value"] > 0, row
        reference = row["reference"]
        if reference and reference["value"]:
            assert math.isclose(row["ratio"], row["value"] / reference["value"]), row
        else:
            assert row["ratio"] is None, row
        if row["target"] is None:
            assert row["met"] == "n/a", row


@pytest.mark.slow
def test_missing_peers_are_said_not_hidden(quick_run: tuple[dict[str, Any], str]) -> None:
    results, stdout = quick_run
    (step,) = [row for row in results["rows"] if row["group"] == "approval"]
    if peers.available():
        assert step["reference"]["value"] is None
        assert step["note"].startswith("LangGraph skipped: ")
        assert "LangGraph skipped" in stdout
    else:
        assert step["reference"]["value"] > 0 and "langgraph" in step["note"]
    memory = [row for row in results["rows"] if row["group"] == "memory"]
    try:
        import chromadb  # noqa: F401  # only asks whether it is installed
    except ImportError:
        has_chroma = peers.chroma_in_venv()  # then chromadb runs there, as LangGraph does
    else:
        has_chroma = True
    if not has_chroma:
        assert all("chromadb not installed" in row["note"] for row in memory)
        assert "chromadb: skipped (chromadb not installed" in stdout
    else:
        assert all(row["reference"]["value"] > 0 for row in memory)
        assert all(row["note"].startswith("chromadb ") for row in memory)


@pytest.mark.slow
def test_the_table_is_printed(quick_run: tuple[dict[str, Any], str]) -> None:
    stdout = quick_run[1]
    assert "| row | value (min–max) | reference | ratio | target | met |" in stdout  # noqa: RUF001  # the table's own dash
    assert stdout.count("\n| ") >= len(quick_run[0]["rows"])
