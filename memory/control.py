"""Operator control state: policy changes made in chat, agent lifecycle, model spend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from memory.clock import to_iso
from memory.store import Store, Transaction


class PolicyOverrideRepo:
    """Policy rules changed from chat; they win over ``config/policies.toml``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every stored rule by key."""
        rows = await self._store.fetchall("SELECT key, rule FROM policy_overrides ORDER BY key")
        return {row["key"]: json.loads(row["rule"]) for row in rows}

    async def put(
        self, tx: Transaction, key: str, rule: dict[str, Any], by: str, now: datetime
    ) -> None:
        """Store or replace one rule."""
        await tx.execute(
            "INSERT INTO policy_overrides (key, rule, updated_by, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET rule = excluded.rule,"
            " updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            (key, json.dumps(rule, sort_keys=True), by, to_iso(now)),
        )

    async def delete(self, tx: Transaction, key: str) -> bool:
        """Drop a chat change (the file's rule applies again)."""
        return await tx.execute("DELETE FROM policy_overrides WHERE key = ?", (key,)) == 1


@dataclass(frozen=True, slots=True)
class AgentStateRow:
    """An agent's lifecycle state as stored."""

    agent: str
    state: str
    reason: str | None
    extended_day: str | None
    extra_actions: int


class AgentStateRepo:
    """Which agents are paused or degraded, and budget extensions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def all(self) -> dict[str, AgentStateRow]:
        rows = await self._store.fetchall("SELECT * FROM agent_state")
        return {
            row["agent"]: AgentStateRow(
                row["agent"],
                row["state"],
                row["reason"],
                row["extended_day"],
                int(row["extra_actions"]),
            )
            for row in rows
        }

    async def set(
        self, tx: Transaction, agent: str, state: str, reason: str | None, now: datetime
    ) -> None:
        """Set an agent's state."""
        await tx.execute(
            "INSERT INTO agent_state (agent, state, reason, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(agent) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
            " updated_at = excluded.updated_at",
            (agent, state, reason, to_iso(now)),
        )

    async def extend(
        self, tx: Transaction, agent: str, day: date, extra: int, now: datetime
    ) -> None:
        """Allow ``extra`` more actions today."""
        await tx.execute(
            "INSERT INTO agent_state (agent, state, updated_at, extended_day, extra_actions)"
            " VALUES (?, 'running', ?, ?, ?) ON CONFLICT(agent) DO UPDATE SET"
            " extra_actions = CASE WHEN extended_day = excluded.extended_day"
            " THEN extra_actions + excluded.extra_actions ELSE excluded.extra_actions END,"
            " extended_day = excluded.extended_day, updated_at = excluded.updated_at",
            (agent, to_iso(now), day.isoformat(), extra),
        )


class SpendRepo:
    """Model spend per agent (tokens priced per model in settings)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self,
        tx: Transaction,
        *,
        agent: str,
        model: str,
        tokens_in: int,
        tokens_out: int,
        cost: float,
        now: datetime,
    ) -> None:
        await tx.execute(
            "INSERT INTO spend (agent, model, tokens_in, tokens_out, cost, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (agent, model, tokens_in, tokens_out, cost, to_iso(now)),
        )

    async def since(self, agent: str, since: datetime) -> float:
        """Total cost for ``agent`` since ``since``."""
        return float(
            await self._store.scalar(
                "SELECT COALESCE(SUM(cost), 0) FROM spend WHERE agent = ? AND at >= ?",
                (agent, to_iso(since)),
            )
        )
