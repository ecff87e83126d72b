"""The service files in the repository parse and say what they must (issue 10.20).

No container is built here: the Dockerfile is checked for its structure, the systemd
unit by ``systemd-analyze verify`` when the machine has it, and by a parser always.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "soloops.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header[1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {number} is not key=value in a section"
        assert re.fullmatch(r"[A-Za-z]+", key), f"line {number}: bad key {key!r}"
        current.setdefault(key, []).append(value)
    return sections


def test_the_systemd_unit_has_what_a_service_needs() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]
    assert service["ExecStart"] == ["/opt/soloops/bin/soloops run"]
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/soloops/soloops.env"]
    assert "SOLOOPS_HOME=/var/lib/soloops" in service["Environment"]
    assert service["ReadWritePaths"] == ["/var/lib/soloops"]
    assert service["UMask"] == ["0077"]
    for hardening in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[hardening] == ["yes"], hardening
    assert service["ProtectSystem"] == ["strict"]
    # Exit codes soloops uses for "fix me first" must not loop through restarts.
    assert service["RestartPreventExitStatus"] == ["2 3 4"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart exists and the EnvironmentFile is readable: point
    # them at things this machine has, keep every other line as shipped.
    text = UNIT.read_text(encoding="utf-8")
    text = text.replace("/opt/soloops/bin/soloops", str(shutil.which("true")))
    text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
    copy = tmp_path / "soloops.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def _instructions(path: Path) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_installs_with_the_constraints_and_runs_soloops() -> None:
    steps = _instructions(ROOT / "Dockerfile")
    known = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "VOLUME", "ENTRYPOINT", "CMD"}
    assert {word for word, _ in steps} <= known
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")
    runs = [rest for word, rest in steps if word == "RUN"]
    torch = next(i for i, r in enumerate(runs) if " torch" in r)
    package = next(i for i, r in enumerate(runs) if r.endswith("install -c constraints.txt ."))
    assert torch < package, "torch (CPU build) goes in before the package"
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    assert "-c constraints.txt" in runs[torch]
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text(encoding="utf-8")
    copied = [rest.split()[0] for word, rest in steps if word == "COPY"]
    for package_dir in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["packages"]:
        assert package_dir in copied, package_dir
        assert (ROOT / package_dir).is_dir()
    assert ("USER", "soloops") in steps, "the service does not run as root"
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "SOLOOPS_HOME=/home/soloops/data" in env
    assert ("VOLUME", '["/home/soloops/data"]') in steps
    assert steps[-2:] == [("ENTRYPOINT", '["soloops"]'), ("CMD", '["run"]')]


def test_compose_uses_a_volume_for_the_home() -> None:
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert "build: ." in text
    assert "- soloops-home:/home/soloops/data" in text
    assert "restart: on-failure" in text
    assert re.search(r"^volumes:\n  soloops-home:", text, re.MULTILINE)
