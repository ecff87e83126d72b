"""The contract every connector fulfils, and the errors it speaks.

    ConnectorError (root)
    ├── TransientError    worth retrying: timeouts, network errors, 5xx, 429 (retry_after)
    └── PermanentError    retrying cannot help: other 4xx, bad configuration

A connector is the only code that talks to the outside world. It takes an
idempotency key with every call and passes it on where the far side understands it,
translates vendor errors into the two kinds above (``raise ... from exc``), and says
what it knows about a key after a crash (:meth:`Connector.lookup`). It never decides
whether an action is allowed: the coordinator's policy gate did that before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class ConnectorError(Exception):
    """Root of every connector error."""


class TransientError(ConnectorError):
    """A failure that may pass: retry later (after ``retry_after`` seconds if given)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """A failure that retrying cannot fix."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What the outside world answered to an action."""

    summary: str
    detail: dict[str, Any] = field(default_factory=dict)


class Known(StrEnum):
    """What a connector can tell about an idempotency key after a crash."""

    DONE = "done"  # the far side has it: do not send again
    NOT_DONE = "not_done"  # the far side never saw it: safe to send
    UNKNOWN = "unknown"  # cannot tell: ask the operator


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer of :meth:`Connector.lookup`."""

    known: Known
    result: ActionResult | None = None


class Connector(Protocol):
    """An adapter to one outside system."""

    name: str
    version: str
    operations: frozenset[str]

    async def execute(
        self, operation: str, params: dict[str, Any], idempotency_key: str
    ) -> ActionResult:
        """Perform ``operation`` once per ``idempotency_key``; raise a ConnectorError kind."""
        ...

    async def lookup(self, operation: str, params: dict[str, Any], idempotency_key: str) -> Lookup:
        """Say whether an action with this key already happened (for crash recovery)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
