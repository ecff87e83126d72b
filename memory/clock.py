"""Time, as a small contract so logic that depends on it can be tested exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time, always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Store times as sortable ISO-8601 UTC strings with microseconds."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # %-formatting the fields is ~4x faster than strftime (a message writes ~15 times).
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031  # the fast one
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
    )


def from_iso(text: str) -> datetime:
    """Parse a time written by :func:`to_iso`."""
    # fromisoformat reads the trailing "Z" since Python 3.11, ~20x faster than strptime.
    return datetime.fromisoformat(text)


class ManualClock:
    """A clock that stands still until told to move: for tests and replays."""

    def __init__(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self.moment = moment.astimezone(UTC)

    def now(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware)."""
        self.moment = moment.astimezone(UTC)

    def advance(self, seconds: float = 0.0, **kwargs: float) -> None:
        """Move forward by ``seconds`` plus any ``timedelta`` keywords (hours=3...)."""
        self.moment += timedelta(seconds=seconds, **kwargs)
