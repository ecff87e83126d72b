"""A budget for recording refused requests, so a flood cannot flood the event log.

Shared by every HTTP entry point that records refusals (Slack HTTP mode, inbound hooks).
"""

from __future__ import annotations


class RefusalBudget:
    """At most ``limit`` refused-request events per ``window_s``, so a flood of forged
    requests cannot swamp the event log; the next recorded one counts the skipped."""

    def __init__(self, limit: int = 30, window_s: float = 60.0) -> None:
        self._limit = limit
        self._window_s = window_s
        self._started = float("-inf")
        self._used = 0
        self._skipped = 0

    def admit(self, now: float) -> int | None:
        """None: do not record this one; else record it, with this many skipped before it."""
        if now - self._started >= self._window_s:
            self._started, self._used = now, 0
        if self._used >= self._limit:
            self._skipped += 1
            return None
        self._used += 1
        skipped, self._skipped = self._skipped, 0
        return skipped
