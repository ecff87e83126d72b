"""LangGraph, the peer for the durable approval step, in its own venv (``.venv-bench``).

LangGraph pulls websockets, requests and more that must not land in the venv the tests
run in, so the bench keeps it in ``.venv-bench`` at the repository root (gitignored)
and runs :mod:`bench.langgraph_step` there as a subprocess that prints JSON. If that
venv cannot be made, the row says "skipped" and why; nothing else is affected.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-bench"
# The versions the README's numbers were measured with.
PINS = ("langgraph==1.2.22", "langgraph-checkpoint-sqlite==3.1.2")
# The memory rows' peer, in the same venv (its dependencies stay out of .venv too).
CHROMA_PIN = "chromadb==1.5.9"
SCRIPT = Path(__file__).with_name("langgraph_step.py")


def python() -> Path:
    return VENV / "bin" / "python"


def available() -> str:
    """ "" when ``.venv-bench`` can run LangGraph, else why not."""
    if not python().exists():
        return f"no {VENV.name} (make bench creates it)"
    probe = subprocess.run(
        [str(python()), "-c", "import langgraph.checkpoint.sqlite.aio, langgraph.types"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if probe.returncode:
        return f"{VENV.name} cannot import langgraph: {probe.stderr.strip().splitlines()[-1:]}"
    return ""


def ensure() -> str:
    """Create ``.venv-bench`` with the pinned LangGraph if it is missing; "" or why not."""
    if not available():
        return ""
    try:
        if not python().exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python()), "-m", "pip", "install", "-q", *PINS],
            check=True,
            timeout=900,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"could not create {VENV.name}: {exc}"
    return available()


def chroma_in_venv() -> bool:
    """Whether ``.venv-bench`` has chromadb (the memory rows' peer runs there)."""
    if not python().exists():
        return False
    probe = subprocess.run(
        [str(python()), "-c", "import chromadb"], capture_output=True, check=False, timeout=120
    )
    return probe.returncode == 0


def ensure_chroma() -> bool:
    """Install the pinned chromadb into ``.venv-bench`` if it is missing; whether it is there."""
    if chroma_in_venv():
        return True
    try:
        if not python().exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python()), "-m", "pip", "install", "-q", CHROMA_PIN],
            check=True,
            timeout=1800,
            capture_output=True,
        )
    except (subprocess.SubprocessError, OSError):
        return False
    return chroma_in_venv()


def langgraph_steps(db: Path, steps: int) -> tuple[list[float], dict[str, str]]:
    """CPU seconds per interrupt + resume step, and the versions that ran."""
    done = subprocess.run(
        [str(python()), str(SCRIPT), str(db), str(steps)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"langgraph_step.py failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return [float(x) for x in result["cpu_s"]], dict(result["versions"])
