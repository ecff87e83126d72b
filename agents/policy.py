"""The policy gate: auto, approve or deny, per agent and action, as plain functions.

Rules come from ``config/policies.toml`` and from changes made in chat (``/policy``),
which are stored in SQLite and win over the file. Progressive autonomy: an action
that ran without approval and then failed or was undone is *demoted* to ``approve``
until the operator promotes it again.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from agents.actions import Risk
from agents.errors import AgentsError

POLICIES_FILE = Path(__file__).resolve().parent.parent / "config" / "policies.toml"


class PolicyError(AgentsError):
    """A policy rule or command is malformed; the message says how to write it."""


class Mode(StrEnum):
    """What the gate does with an action."""

    AUTO = "auto"
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    """How one ``<agent>.<action>`` is gated."""

    mode: Mode = Mode.APPROVE
    approve_above: Decimal | None = None
    currency: str | None = None
    approve_new_recipient: bool = False
    approve_first_runs: int = 0
    demoted: bool = False
    # What the action's risk can carry ("amount", "recipient"), as its feature declares
    # in its default rule; None when nobody said. A declaration, not a setting: it is
    # never stored, so thresholds that could never apply are caught when set.
    measures: frozenset[str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "approve_above": None if self.approve_above is None else str(self.approve_above),
            "currency": self.currency,
            "approve_new_recipient": self.approve_new_recipient,
            "approve_first_runs": self.approve_first_runs,
            "demoted": self.demoted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        try:
            above = data.get("approve_above")
            return cls(
                mode=Mode(data.get("mode", "approve")),
                approve_above=None if above is None else Decimal(str(above)),
                currency=(data.get("currency") or None) and str(data["currency"]).upper(),
                approve_new_recipient=bool(data.get("approve_new_recipient", False)),
                approve_first_runs=int(data.get("approve_first_runs", 0)),
                demoted=bool(data.get("demoted", False)),
            )
        except (ValueError, InvalidOperation, TypeError) as exc:
            raise PolicyError(f"bad policy rule {data!r}: {exc}") from exc

    def describe(self) -> str:
        """The rule in words, as /policy shows it."""
        parts = [self.mode.value]
        if self.mode is Mode.AUTO:
            if self.approve_above is not None:
                parts.append(f"approve above {self.approve_above} {self.currency or ''}".rstrip())
            if self.approve_new_recipient:
                parts.append("approve new recipients")
            if self.approve_first_runs:
                parts.append(f"approve the first {self.approve_first_runs} runs")
        if self.demoted:
            parts.append("DEMOTED to approve after a failure or undo")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's answer with its reason (recorded as an event)."""

    mode: Mode
    reason: str


def gate_decision(key: str, rule: Rule, risk: Risk, runs: int) -> GateDecision:
    """Gate one action: ``key`` is ``<agent>.<action>``, ``runs`` its past successes."""
    if rule.mode is Mode.DENY:
        return GateDecision(Mode.DENY, f"policy denies {key}")
    if rule.mode is Mode.APPROVE:
        return GateDecision(Mode.APPROVE, f"policy asks approval for every {key}")
    if rule.demoted:
        return GateDecision(
            Mode.APPROVE,
            f"{key} was demoted after a failure or undo; /policy {key} auto promotes it",
        )
    if rule.approve_first_runs and runs < rule.approve_first_runs:
        return GateDecision(
            Mode.APPROVE, f"{key} has run {runs} of its first {rule.approve_first_runs} times"
        )
    if rule.approve_new_recipient and risk.new_recipient:
        return GateDecision(Mode.APPROVE, f"{key} goes to a new recipient")
    if rule.approve_above is not None and risk.amount is None:
        # A threshold it cannot be measured against must not wave it through.
        return GateDecision(
            Mode.APPROVE,
            f"{key} has no amount to compare with the {_threshold(rule)} threshold, so it asks",
        )
    if rule.approve_above is not None and risk.amount is not None:
        currency = (risk.currency or "").upper()
        if rule.currency and currency != rule.currency:
            return GateDecision(
                Mode.APPROVE,
                f"{key} is in {currency or 'no currency'}; the threshold is in {rule.currency}",
            )
        if risk.amount > rule.approve_above:
            return GateDecision(
                Mode.APPROVE,
                f"{key} amount {risk.amount} {currency} is above {rule.approve_above}",
            )
    return GateDecision(Mode.AUTO, f"policy allows {key} without approval")


def _threshold(rule: Rule) -> str:
    return f"{rule.approve_above} {rule.currency or ''}".rstrip()


def inapplicable(key: str, rule: Rule, measures: frozenset[str] | None) -> str | None:
    """Why ``rule`` cannot apply to ``key``'s actions (None: it can, or nobody said).

    ``measures`` is what the action's risk carries ("amount", "recipient").
    """
    if measures is None or rule.mode is not Mode.AUTO:
        return None
    if rule.approve_above is not None and "amount" not in measures:
        return (
            f"{key} has no amount, so approve-above {_threshold(rule)} would always ask;"
            f" use /policy {key} approve or /policy {key} auto"
        )
    if rule.approve_new_recipient and "recipient" not in measures:
        return (
            f"{key} has no recipient, so approve-new-recipients would never ask;"
            f" use /policy {key} approve or /policy {key} auto"
        )
    return None


def explain(key: str, rule: Rule) -> str:
    """A rule in force, said so that what still asks for approval is clear."""
    if rule.mode is Mode.DENY:
        return f"{key}: deny. It never runs."
    if rule.mode is Mode.APPROVE or rule.demoted:
        extra = (
            f" (DEMOTED after a failure or undo; /policy {key} auto promotes it)"
            if rule.demoted
            else ""
        )
        return f"{key}: approve{extra}. Every one asks for approval with a card."
    still = []
    if rule.approve_above is not None:
        still.append(f"amounts above {_threshold(rule)}")
    if rule.approve_new_recipient:
        still.append("new recipients")
    if rule.approve_first_runs:
        still.append(f"the first {rule.approve_first_runs} runs")
    if not still:
        return f"{key}: auto. It runs without approval; no thresholds remain."
    return (
        f"{key}: auto, but these still ask for approval: {', '.join(still)}."
        f" /policy {key} reset goes back to the default."
    )


def load_rules(path: Path = POLICIES_FILE) -> dict[str, Rule]:
    """Rules from a policies file: ``[defaults]`` and ``[<agent>.<action>]`` tables."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"cannot read policies from {path}: {exc}") from exc
    rules: dict[str, Rule] = {}
    for agent, table in data.items():
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: '{agent}' must be a table")
        if agent == "defaults":
            rules["*"] = Rule.from_json(table)
            continue
        for action, rule in table.items():
            if not isinstance(rule, dict):
                raise PolicyError(f"{path}: '{agent}.{action}' must be a table")
            rules[f"{agent}.{action}"] = Rule.from_json(rule)
    return rules


def effective_rule(key: str, base: dict[str, Rule], overrides: dict[str, Rule]) -> Rule:
    """The rule in force: a chat change, else the file's rule, else the defaults."""
    return overrides.get(key) or base.get(key) or base.get("*") or Rule()


_KEY = re.compile(r"^[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*$")
POLICY_USAGE = (
    "policy <agent.action> auto | approve | deny | approve-above <amount> <CUR>"
    " | approve-new-recipients | first-runs <n> | reset"
)


def parse_change(words: list[str], current: Rule) -> tuple[str, Rule | None]:
    """Parse ``/policy`` arguments into (key, new rule); a None rule means reset to the file."""
    if len(words) < 2 or not _KEY.match(words[0].lower()):
        raise PolicyError(f"Usage: /{POLICY_USAGE}")
    key, verb, rest = words[0].lower(), words[1].lower(), words[2:]
    if verb == "reset" and not rest:
        return key, None
    if verb == "auto" and not rest:
        return key, replace(current, mode=Mode.AUTO, demoted=False)
    if verb in ("approve", "deny") and not rest:
        # Asking every time (or never running) makes thresholds meaningless: drop them.
        return key, Rule(mode=Mode(verb), measures=current.measures)
    if verb == "approve-above" and len(rest) == 2:
        try:
            amount = Decimal(rest[0])
        except InvalidOperation:
            raise PolicyError(f"'{rest[0]}' is not an amount. Usage: /{POLICY_USAGE}") from None
        if amount < 0 or not re.fullmatch(r"[A-Za-z]{3}", rest[1]):
            raise PolicyError(f"Write it like: /policy {key} approve-above 500 EUR")
        return key, replace(
            current, mode=Mode.AUTO, approve_above=amount, currency=rest[1].upper(), demoted=False
        )
    if verb == "approve-new-recipients" and not rest:
        return key, replace(current, mode=Mode.AUTO, approve_new_recipient=True, demoted=False)
    if verb == "first-runs" and len(rest) == 1 and rest[0].isdigit():
        return key, replace(current, mode=Mode.AUTO, approve_first_runs=int(rest[0]), demoted=False)
    raise PolicyError(f"Usage: /{POLICY_USAGE}")
