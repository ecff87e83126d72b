"""The policy gate, the breaker and the retry schedule as plain functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agents.actions import Risk
from agents.backoff import Backoff
from agents.breaker import BreakerState, CircuitBreaker
from agents.policy import (
    Mode,
    PolicyError,
    Rule,
    effective_rule,
    explain,
    gate_decision,
    inapplicable,
    load_rules,
    parse_change,
)
from agents.registry import build_registry

AUTO = Rule(mode=Mode.AUTO)


@pytest.mark.parametrize(
    ("rule", "risk", "runs", "mode", "says"),
    [
        (Rule(mode=Mode.DENY), Risk(), 0, Mode.DENY, "policy denies x.y"),
        (Rule(), Risk(), 9, Mode.APPROVE, "asks approval for every x.y"),
        (AUTO, Risk(), 0, Mode.AUTO, "allows x.y without approval"),
        (Rule(Mode.AUTO, demoted=True), Risk(), 0, Mode.APPROVE, "demoted"),
        (Rule(Mode.AUTO, approve_first_runs=3), Risk(), 2, Mode.APPROVE, "run 2 of its first 3"),
        (Rule(Mode.AUTO, approve_first_runs=3), Risk(), 3, Mode.AUTO, "without approval"),
        (
            Rule(Mode.AUTO, approve_new_recipient=True),
            Risk(new_recipient=True),
            0,
            Mode.APPROVE,
            "new recipient",
        ),
        (Rule(Mode.AUTO, approve_new_recipient=True), Risk(), 0, Mode.AUTO, "without approval"),
        (
            Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR"),
            Risk(Decimal("500.00"), "EUR"),
            0,
            Mode.AUTO,
            "without approval",
        ),
        (
            Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR"),
            Risk(Decimal("500.01"), "eur"),
            0,
            Mode.APPROVE,
            "above 500",
        ),
        (
            Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR"),
            Risk(Decimal(10), "USD"),
            0,
            Mode.APPROVE,
            "threshold is in EUR",
        ),
        # Issue 10 item 10: no amount to compare (a hook) asks; main let it through.
        (
            Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR"),
            Risk(),
            0,
            Mode.APPROVE,
            "has no amount to compare with the 500 EUR threshold",
        ),
    ],
)
def test_decide(rule: Rule, risk: Risk, runs: int, mode: Mode, says: str) -> None:
    decision = gate_decision("x.y", rule, risk, runs)
    assert decision.mode is mode
    assert says in decision.reason


def test_parse_change() -> None:
    key, rule = parse_change(["Invoices.Send", "approve-above", "500", "eur"], Rule())
    assert key == "invoices.send"
    assert rule == Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR")
    assert rule.describe() == "auto, approve above 500 EUR"
    _, promoted = parse_change(["a.b", "auto"], Rule(Mode.AUTO, demoted=True))
    assert promoted is not None and not promoted.demoted
    assert parse_change(["a.b", "reset"], Rule()) == ("a.b", None)
    _, first = parse_change(["a.b", "first-runs", "3"], Rule())
    assert first == Rule(Mode.AUTO, approve_first_runs=3)
    for bad in (
        ["a.b"],
        ["nodot", "auto"],
        ["a.b", "approve-above", "lots", "EUR"],
        ["a.b", "approve-above", "5", "EURO"],
        ["a.b", "maybe"],
    ):
        with pytest.raises(PolicyError, match="policy"):
            parse_change(bad, Rule())


def test_rules_round_trip_and_files(tmp_path: Path) -> None:
    rule = Rule(Mode.AUTO, approve_above=Decimal("12.5"), currency="EUR", approve_first_runs=2)
    assert Rule.from_json(rule.as_json()) == rule
    path = tmp_path / "p.toml"
    path.write_text('[defaults]\nmode = "deny"\n[ops.hook]\nmode = "auto"\n')
    rules = load_rules(path)
    assert effective_rule("ops.hook", rules, {}).mode is Mode.AUTO
    assert effective_rule("other.thing", rules, {}).mode is Mode.DENY
    assert effective_rule("ops.hook", rules, {"ops.hook": Rule()}).mode is Mode.APPROVE
    path.write_text('[ops.hook]\nmode = "sometimes"\n')
    with pytest.raises(PolicyError, match="bad policy rule"):
        load_rules(path)
    assert load_rules()["*"].mode is Mode.APPROVE  # the packaged file
    # ops.hook's default now comes from the ops feature's declaration.
    assert build_registry().policies["ops.hook"].mode is Mode.APPROVE


def test_breaker_opens_half_opens_and_closes() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    breaker = CircuitBreaker(threshold=2, cooldown=timedelta(seconds=30))
    assert not breaker.failure(now)
    assert breaker.state(now) is BreakerState.CLOSED
    assert breaker.failure(now)  # opened by this one
    assert not breaker.allow(now + timedelta(seconds=10))
    assert breaker.retry_at(now) == now + timedelta(seconds=30)
    later = now + timedelta(seconds=31)
    assert breaker.state(later) is BreakerState.HALF_OPEN
    assert breaker.allow(later)  # one probe
    assert not breaker.allow(later)  # and only one
    breaker.failure(later)  # the probe failed: open again
    assert breaker.state(later) is BreakerState.OPEN
    much_later = later + timedelta(seconds=31)
    assert breaker.allow(much_later)
    breaker.success()
    assert breaker.state(much_later) is BreakerState.CLOSED


def test_retry_schedule_backs_off_with_jitter_and_respects_retry_after() -> None:
    policy = Backoff(base_s=2, cap_s=60)
    rng = random.Random(1)
    delays = [policy.delay(n, None, rng=rng) for n in range(1, 9)]
    assert 1.0 <= delays[0] <= 2.0
    assert all(policy.delay(n, None, rng=rng) <= 60 for n in range(1, 30))
    assert delays[5] >= 30  # 2 * 2^5 = 64, capped at 60, at least half of it
    assert policy.delay(1, 45.0, rng=rng) == 45.0


def test_a_threshold_that_cannot_apply_is_named() -> None:
    above = Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR")
    assert inapplicable("ops.hook", above, frozenset()) == (
        "ops.hook has no amount, so approve-above 500 EUR would always ask;"
        " use /policy ops.hook approve or /policy ops.hook auto"
    )
    assert inapplicable("invoices.send", above, frozenset({"amount"})) is None
    assert inapplicable("x.y", above, None) is None  # nobody declared: the gate still asks
    new = Rule(Mode.AUTO, approve_new_recipient=True)
    assert "has no recipient" in (inapplicable("ops.hook", new, frozenset()) or "")
    assert inapplicable("ops.hook", Rule(Mode.APPROVE), frozenset()) is None


def test_explain_says_which_thresholds_remain() -> None:
    assert explain("ops.hook", Rule(Mode.AUTO)) == (
        "ops.hook: auto. It runs without approval; no thresholds remain."
    )
    kept = Rule(Mode.AUTO, approve_above=Decimal(500), currency="EUR", approve_first_runs=3)
    assert explain("x.y", kept) == (
        "x.y: auto, but these still ask for approval: amounts above 500 EUR,"
        " the first 3 runs. /policy x.y reset goes back to the default."
    )
    assert "Every one asks" in explain("x.y", Rule())
    assert "DEMOTED" in explain("x.y", Rule(Mode.AUTO, demoted=True))
    # approve / deny drop thresholds, so a later "auto" carries none along silently.
    _, strict = parse_change(["x.y", "approve"], kept)
    assert strict == Rule(Mode.APPROVE)
