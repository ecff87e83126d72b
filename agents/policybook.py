"""The policy gate's bookkeeping: the rules in force, chat changes, demotion.

Rules come, weakest first, from the features' defaults (``Feature.policies``), the
policies file (``config/policies.toml``) and changes made in chat (``/policy``, stored
in SQLite). The gate itself is a plain function (:func:`agents.policy.gate_decision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from agents.policy import POLICIES_FILE, Mode, Rule, effective_rule, load_rules
from memory.clock import Clock
from memory.control import PolicyOverrideRepo
from memory.events import EventLog
from memory.store import Store, Transaction


class PolicyBook:
    """The rules in force, and changes to them with their events."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        clock: Clock,
        defaults: Mapping[str, Rule] | None = None,
        policies_file: Path | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._overrides = PolicyOverrideRepo(store)
        declared = dict(defaults or {})
        from_file = load_rules(policies_file or POLICIES_FILE)
        # The file sets modes and thresholds; what an action measures stays declared.
        self._base = {
            **declared,
            **{
                key: replace(rule, measures=declared[key].measures) if key in declared else rule
                for key, rule in from_file.items()
            },
        }

    async def rules(self) -> tuple[dict[str, Rule], dict[str, Rule]]:
        """(rules from the features and the policies file, rules changed in chat)."""
        overrides = {k: Rule.from_json(v) for k, v in (await self._overrides.all()).items()}
        return dict(self._base), overrides

    async def rule_for(self, key: str) -> Rule:
        base, overrides = await self.rules()
        return effective_rule(key, base, overrides)

    async def set_rule(self, key: str, rule: Rule | None, actor: str) -> Rule:
        """Change a rule from chat (None: back to the default). Returns the rule in force."""
        async with self._store.write() as tx:
            if rule is None:
                await self._overrides.delete(tx, key)
            else:
                await self._overrides.put(tx, key, rule.as_json(), actor, self._clock.now())
            await self._events.append(
                tx,
                "policy.changed",
                actor=actor,
                subject=f"policy:{key}",
                payload={"rule": None if rule is None else rule.as_json()},
            )
        return await self.rule_for(key)

    async def demote(self, tx: Transaction, key: str, why: str) -> None:
        """Progressive autonomy: an auto action that failed or was undone needs approval."""
        rule = await self.rule_for(key)
        if rule.mode is not Mode.AUTO or rule.demoted:
            return
        await self._overrides.put(
            tx, key, replace(rule, demoted=True).as_json(), "supervisor", self._clock.now()
        )
        await self._events.append(
            tx, "policy.demoted", actor="supervisor", subject=f"policy:{key}", payload={"why": why}
        )
