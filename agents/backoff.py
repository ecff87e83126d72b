"""The one retry schedule: exponential backoff with jitter, and the service's own word.

Every retry in soloops (outbox deliveries, connector actions, the Telegram polling
loop, storage failures at the edge) waits :meth:`Backoff.delay` seconds, so they all
behave alike and are tested once. A pure function of its inputs: the random source
is passed in, so tests pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff from ``base_s``, capped at ``cap_s``, with equal jitter.

    Attempt 1 waits between ``base_s / 2`` and ``base_s``, attempt 2 up to twice that,
    and so on up to ``cap_s``; half the wait is random, so many failures that started
    together do not retry in lockstep. A ``retry_after`` the other side asked for
    (HTTP Retry-After, Telegram's ``retry_after``) wins when it is longer.
    """

    base_s: float = 1.0
    cap_s: float = 300.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError(f"backoff needs 0 < base ({self.base_s}) <= cap ({self.cap_s})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(0, attempt - 1), 62)  # 2**62 s is far past any cap
        return min(self.cap_s, self.base_s * 2.0**exponent)

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one."""
        ceiling = self.ceiling(attempt)
        jittered = ceiling / 2 + (rng or random).random() * ceiling / 2
        return max(jittered, retry_after or 0.0)
