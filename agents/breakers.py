"""Circuit breakers per (connector, endpoint), kept in SQLite so they survive a restart.

An endpoint is the far side one action talks to: the hook's name for a webhook, the
SMTP host for email (a connector says so with an ``endpoint(operation, params)``
method; :func:`endpoint_of`). One dead hook opens only its own breaker, so actions for
a working hook of the same connector go through. The state machine per endpoint is
:class:`~agents.breaker.CircuitBreaker`; :class:`BreakerBoard` keeps one per endpoint
and stores every change (``memory/breakers.py``), loaded again at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from agents.breaker import BreakerState, CircuitBreaker
from memory.actions import ActionRow
from memory.breakers import BreakerRepo, BreakerRow
from memory.clock import Clock
from memory.store import Store

Key = tuple[str, str]


@runtime_checkable
class HasEndpoint(Protocol):
    """A connector that names the endpoint an action talks to."""

    def endpoint(self, operation: str, params: Mapping[str, Any]) -> str:
        """The endpoint (hook name, server host...) ``params`` address."""
        ...


def endpoint_of(action: ActionRow, connector: object | None = None) -> str:
    """The endpoint ``action`` talks to: what its connector says, else its ``hook``
    param, else ``""`` (the connector as a whole)."""
    if isinstance(connector, HasEndpoint):
        try:
            return connector.endpoint(action.operation, action.params)
        except Exception:  # bad params: the connector refuses them on execute, permanently
            return ""
    hook = action.params.get("hook")
    return hook if isinstance(hook, str) else ""


def label(connector: str, endpoint: str) -> str:
    """How /status and the metrics name one breaker: ``webhook:crm``, or ``email``."""
    return f"{connector}:{endpoint}" if endpoint else connector


class BreakerBoard:
    """Every endpoint's breaker; changes are stored as they happen."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        connectors: Mapping[str, object],
        *,
        threshold: int = 5,
        cooldown: timedelta = timedelta(seconds=30),
    ) -> None:
        self._repo = BreakerRepo(store)
        self._clock = clock
        self._connectors = dict(connectors)
        self._threshold = threshold
        self._cooldown = cooldown
        self._breakers: dict[Key, CircuitBreaker] = {}

    async def load(self) -> None:
        """Take the stored state (an open breaker stays open across a restart)."""
        for row in await self._repo.all():
            breaker = self._new()
            breaker.failures, breaker.opened_at = row.failures, row.opened_at
            self._breakers[(row.connector, row.endpoint)] = breaker

    def _new(self) -> CircuitBreaker:
        return CircuitBreaker(threshold=self._threshold, cooldown=self._cooldown)

    def endpoint(self, action: ActionRow) -> str:
        """The endpoint ``action`` talks to (:func:`endpoint_of` with its connector)."""
        return endpoint_of(action, self._connectors.get(action.connector))

    def get(self, connector: str, endpoint: str) -> CircuitBreaker:
        """The breaker of one endpoint (a fresh closed one the first time)."""
        key = (connector, endpoint)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = self._new()
        return breaker

    async def success(self, connector: str, endpoint: str) -> None:
        """The endpoint answered: close its breaker (stored only if it changed)."""
        breaker = self.get(connector, endpoint)
        changed = breaker.failures or breaker.opened_at is not None
        breaker.success()
        if changed:
            await self._save(connector, endpoint, breaker)

    async def failure(self, connector: str, endpoint: str) -> bool:
        """Count a failure; True when this one opened the breaker."""
        breaker = self.get(connector, endpoint)
        opened = breaker.failure(self._clock.now())
        await self._save(connector, endpoint, breaker)
        return opened

    async def _save(self, connector: str, endpoint: str, breaker: CircuitBreaker) -> None:
        row = BreakerRow(connector, endpoint, breaker.failures, breaker.opened_at)
        await self._repo.save(row, self._clock.now())

    def states(self) -> dict[str, BreakerState]:
        """Each connector's state, and each endpoint whose breaker is not closed.

        ``{"email": closed, "webhook": closed, "webhook:crm": open}``: a connector's own
        entry says closed unless its whole-connector breaker is not.
        """
        now = self._clock.now()
        shown: dict[str, BreakerState] = dict.fromkeys(self._connectors, BreakerState.CLOSED)
        for (connector, endpoint), breaker in sorted(self._breakers.items()):
            state = breaker.state(now)
            if state is not BreakerState.CLOSED:
                shown[label(connector, endpoint)] = state
        return shown
