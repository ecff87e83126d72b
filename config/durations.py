"""Durations as people write them: ``2d``, ``36h``, ``90m``, ``1h30m``, ``1w``, ``2 days``.

One reader for settings (``[followups] after``) and schedules (misfire windows). No I/O.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_UNITS: Final[dict[str, timedelta]] = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
}
_UNIT_WORDS: Final[dict[str, str]] = {
    "week": "w", "weeks": "w", "day": "d", "days": "d", "hr": "h", "hrs": "h",
    "hour": "h", "hours": "h", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "sec": "s", "secs": "s", "second": "s", "seconds": "s",
}  # fmt: skip
_PART = re.compile(r"(\d+)\s*([a-z]+)")
HOW = "write a duration like 2d, 36h, 90m, 1h30m or 20s"


class DurationError(ValueError):
    """Text that is not a positive duration; ``str()`` says what to write instead."""


def parse_duration(text: str) -> timedelta:
    """Read ``2d``, ``36h``, ``20s``, ``90m``, ``1h30m``, ``1w`` or ``2 days``.

    Raises:
        DurationError: the text is not a positive duration.
    """
    cleaned = " ".join(text.lower().split())
    total = timedelta()
    position = 0
    for match in _PART.finditer(cleaned):
        if cleaned[position : match.start()].strip():
            break
        unit = _UNIT_WORDS.get(match.group(2), match.group(2))
        if unit not in _UNITS:
            break
        total += int(match.group(1)) * _UNITS[unit]
        position = match.end()
    else:
        if cleaned and not cleaned[position:].strip() and total > timedelta():
            return total
    raise DurationError(f"{text!r} is not a duration; {HOW}")


def format_duration(span: timedelta) -> str:
    """The short form :func:`parse_duration` reads back: ``1h30m``, ``2d``, ``20s``."""
    seconds = int(span.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
