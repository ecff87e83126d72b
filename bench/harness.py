"""The bench's shared parts: rows, rounds, the machine, the table and ``results.json``.

Every row is a value measured in several rounds, and (where the issue names one) a
reference measured in the same rounds of the same run, so the ratio holds even when
absolute numbers move ±30 % on a busy machine.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


@dataclass(frozen=True, slots=True)
class Target:
    """What the issue asks of a row: ``ratio <= 10``, ``value >= 2000`` ..."""

    text: str
    check: Callable[[Row], bool] = field(repr=False, compare=False)
    on_ratio: bool = False  # judged on the ratio: n/a when the reference is missing


@dataclass(slots=True)
class Row:
    """One line of the table."""

    group: str
    name: str
    unit: str
    rounds: list[float]
    reference_name: str = ""
    reference_unit: str = ""
    reference_rounds: list[float] = field(default_factory=list)
    target: Target | None = None
    skipped: str = ""  # why the row was not measured ("" = measured)
    note: str = ""

    @property
    def value(self) -> float | None:
        return statistics.median(self.rounds) if self.rounds else None

    @property
    def reference(self) -> float | None:
        return statistics.median(self.reference_rounds) if self.reference_rounds else None

    @property
    def ratio(self) -> float | None:
        value, reference = self.value, self.reference
        if value is None or not reference:
            return None
        return value / reference

    @property
    def met(self) -> str:
        if self.skipped or self.target is None or self.value is None:
            return "n/a"
        if self.target.on_ratio and self.ratio is None:
            return "n/a"
        return "yes" if self.target.check(self) else "no"

    def as_json(self) -> dict[str, Any]:
        def spread(samples: list[float]) -> dict[str, Any] | None:
            if not samples:
                return None
            return {
                "n": len(samples),
                "min": min(samples),
                "median": statistics.median(samples),
                "max": max(samples),
            }

        return {
            "group": self.group,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "rounds": spread(self.rounds),
            "reference": None
            if not self.reference_name
            else {
                "name": self.reference_name,
                "value": self.reference,
                "unit": self.reference_unit,
                "rounds": spread(self.reference_rounds),
            },
            "ratio": self.ratio,
            "target": self.target.text if self.target else None,
            "met": self.met,
            "skipped": self.skipped or None,
            "note": self.note or None,
        }


def skipped(group: str, name: str, unit: str, why: str, target: Target | None = None) -> Row:
    """A row that could not be measured here, and says why."""
    return Row(group, name, unit, [], target=target, skipped=why)


def ratio_at_most(limit: float) -> Target:
    return Target(f"ratio <= {limit:g}", lambda row: (row.ratio or float("inf")) <= limit, True)


def ratio_at_least(limit: float, text: str = "") -> Target:
    return Target(text or f"ratio >= {limit:g}", lambda row: (row.ratio or 0.0) >= limit, True)


def value_at_most(limit: float, unit: str) -> Target:
    return Target(f"<= {limit:g} {unit}", lambda row: (row.value or float("inf")) <= limit)


def value_at_least(limit: float, unit: str) -> Target:
    return Target(f">= {limit:g} {unit}", lambda row: (row.value or 0.0) >= limit)


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# The table is for people: an en dash for ranges and a times sign for ratios.
def table(rows: list[Row]) -> str:
    """A Markdown table: the README shows the same text."""
    lines = [
        "| row | value (min–max) | reference | ratio | target | met |",  # noqa: RUF001  # see above
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row.skipped:
            lines.append(
                f"| {row.group}: {row.name} | skipped: {row.skipped} | | | "
                f"{row.target.text if row.target else ''} | n/a |"
            )
            continue
        value = f"{_fmt(row.value)} {row.unit}"
        if len(row.rounds) > 1:
            value += f" ({_fmt(min(row.rounds))}–{_fmt(max(row.rounds))})"  # noqa: RUF001  # see above
        reference = ""
        if row.reference_name and row.reference_rounds:
            reference = f"{row.reference_name}: {_fmt(row.reference)} {row.reference_unit}"
        elif row.reference_name:
            reference = f"{row.reference_name}: skipped ({row.note or 'not measured'})"
        ratio = f"{row.ratio:.2f}×" if row.ratio is not None else ""  # noqa: RUF001  # see above
        target = row.target.text if row.target else ""
        lines.append(
            f"| {row.group}: {row.name} | {value} | {reference} | {ratio} | {target} | {row.met} |"
        )
    return "\n".join(lines)


def write_results(
    rows: list[Row], info: dict[str, Any], options: dict[str, Any], path: Path = RESULTS
) -> None:
    """``results.json``: the machine, the options and every row."""
    document = {
        "machine": info,
        "options": options,
        "rows": [row.as_json() for row in rows],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


__all__ = [
    "RESULTS",
    "Row",
    "Stopwatch",
    "Target",
    "machine",
    "percentile",
    "ratio_at_least",
    "ratio_at_most",
    "skipped",
    "table",
    "value_at_least",
    "value_at_most",
    "write_results",
]
