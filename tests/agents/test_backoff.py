import random

import pytest

from agents.backoff import Backoff


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_grows_exponentially_then_caps() -> None:
    schedule = Backoff(base_s=2.0, cap_s=30.0)
    assert [schedule.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert schedule.ceiling(10_000) == 30.0


def test_jitter_stays_within_half_to_full_ceiling() -> None:
    schedule = Backoff(base_s=1.0, cap_s=300.0)
    assert schedule.delay(4, rng=_Fixed(0.0)) == 4.0
    assert schedule.delay(4, rng=_Fixed(0.999999)) == pytest.approx(8.0, rel=1e-5)
    rng = random.Random(7)
    waits = [schedule.delay(3, rng=rng) for _ in range(200)]
    assert min(waits) >= 2.0 and max(waits) <= 4.0
    assert len(set(waits)) > 100  # really random, not one value


def test_retry_after_wins_when_longer() -> None:
    schedule = Backoff(base_s=1.0, cap_s=60.0)
    assert schedule.delay(1, retry_after=42.0, rng=_Fixed(0.5)) == 42.0
    assert schedule.delay(6, retry_after=0.1, rng=_Fixed(0.0)) == 16.0


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base_s=0.0)
    with pytest.raises(ValueError, match="cap"):
        Backoff(base_s=10.0, cap_s=1.0)
