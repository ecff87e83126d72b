"""A circuit breaker per connector: stop hammering a service that is down.

closed --(N consecutive failures)--> open --(cool-down passes)--> half-open
half-open lets one probe through: success closes, failure opens again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class BreakerState(StrEnum):
    """Whether calls may go through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    """One connector's breaker. Plain state; the caller supplies the time."""

    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    failures: int = 0
    opened_at: datetime | None = None
    probing: bool = False

    def state(self, now: datetime) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: datetime) -> bool:
        """Whether a call may go now (in half-open, only one probe at a time)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def retry_at(self, now: datetime) -> datetime:
        """When a refused call should try again."""
        if self.opened_at is None:
            return now
        return max(now, self.opened_at + self.cooldown)

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self, now: datetime) -> bool:
        """Count a failure; True when this one opened the breaker."""
        was_open = self.opened_at is not None
        self.failures += 1
        self.probing = False
        if was_open or self.failures >= self.threshold:
            self.opened_at = now
            return not was_open
        return False
