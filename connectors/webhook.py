"""Outbound webhooks: POST a signed JSON payload to a named hook.

Errors follow :mod:`connectors.base`:

    ConnectorError
    ├── TransientError    timeout, connection failure, 408, 425, 429, 5xx (retry_after
    │                     from Retry-After, seconds or HTTP date)
    └── PermanentError    unknown hook or operation, bad params, other 4xx, 3xx

Each request carries the idempotency key and an HMAC-SHA256 signature over
``"{timestamp}\\n{key}\\n" + body`` (see :func:`sign`), so a receiver can check who
sent it, refuse stale replays, and dedupe on a key nobody could have swapped.

The hook's secret never leaves this module except inside the signature: error
messages, results and log lines name the hook, never its secret (and never its URL,
which sometimes carries a token of its own).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from config.settings import HookSettings
from config.version import VERSION
from connectors.base import (
    ActionResult,
    Known,
    Lookup,
    PermanentError,
    TransientError,
)
from connectors.http import OwnedClient, check_key, send_capped

if TYPE_CHECKING:  # imported where a request is made: start-up never needs it
    import httpx

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024  # read at most this much of an answer
SHOWN_BODY_CHARS = 300  # how much of an answer an error message or result quotes


USER_AGENT = f"soloops/{VERSION}"


# --- pure functions -------------------------------------------------------------------


def canonical_body(payload: Any) -> bytes:
    """The exact bytes sent for ``payload``: compact JSON, sorted keys, ASCII only."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def sign(secret: str | bytes, timestamp: int, key: str, body: bytes) -> str:
    """The ``X-Soloops-Signature`` value for one request.

    ``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}\\n{key}\\n".encode() + body`` under
    ``secret``. The timestamp lets receivers refuse old replays; the key is signed so a
    captured request cannot be replayed under a new key to slip past dedupe. Neither a
    timestamp (digits) nor a header value holds a newline, so the split is unambiguous.
    """
    raw_secret = secret.encode() if isinstance(secret, str) else secret
    material = f"{timestamp}\n{key}\n".encode() + body
    return "sha256=" + hmac.new(raw_secret, material, hashlib.sha256).hexdigest()


class Outcome(StrEnum):
    """How an HTTP answer counts for the caller."""

    OK = "ok"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one answer; ``retry_after`` only for transient ones."""

    outcome: Outcome
    retry_after: float | None = None


_TRANSIENT_4XX = frozenset({408, 425, 429})


def classify(status: int, headers: Mapping[str, str], *, now: datetime | None = None) -> Verdict:
    """Classify an HTTP status: 2xx ok; 408, 425, 429 and 5xx transient; the rest permanent.

    A transient answer's ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``.
    ``headers`` must look names up case-insensitively (as httpx's do) or use the
    canonical ``Retry-After`` spelling.
    """
    if 200 <= status < 300:
        return Verdict(Outcome.OK)
    if status in _TRANSIENT_4XX or 500 <= status < 600:
        return Verdict(Outcome.TRANSIENT, parse_retry_after(headers.get("Retry-After"), now=now))
    return Verdict(Outcome.PERMANENT)


_SECONDS = re.compile(r"^\s*(\d{1,9})(?:\.\d+)?\s*$")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value; ``None`` when absent or unreadable."""
    if not value:
        return None
    match = _SECONDS.match(value)
    if match:
        return float(match.group(1))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _shown(text: str, secret: str) -> str:
    """A short, single-line, secret-free quote of an answer body."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_BODY_CHARS else text[: SHOWN_BODY_CHARS - 1] + "…"


def _parsed_body(raw: bytes, content_type: str, secret: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type.lower():
        try:
            parsed = json.loads(text)
        except ValueError:
            return _shown(text, secret)
        if secret and secret in text:  # a receiver echoing the secret must not leak it
            return _shown(text, secret)
        return parsed
    return _shown(text, secret)


# --- the connector --------------------------------------------------------------------


class WebhookConnector(OwnedClient):
    """POSTs signed JSON to named hooks; one operation, ``post``.

    Args:
        hooks: the configured hooks by name (``Settings.hooks``).
        client: an httpx client to use; the caller keeps ownership. When omitted the
            connector opens its own and closes it in :meth:`aclose`.
        clock: seconds since the epoch, for the signed timestamp (tests pin it).
    """

    name = "webhook"
    version = "1"
    operations = frozenset({"post"})

    def __init__(
        self,
        hooks: Mapping[str, HookSettings],
        client: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client)
        self._hooks = dict(hooks)
        self._clock = clock

    async def execute(
        self, operation: str, params: dict[str, Any], idempotency_key: str
    ) -> ActionResult:
        """POST ``params["payload"]`` to the hook ``params["hook"]`` once per key.

        Raises:
            TransientError: the hook may take it later (timeouts, network, 408/425/429/5xx).
            PermanentError: retrying cannot help (unknown hook, bad params, other 4xx).
        """
        name, hook = self._hook(operation, params)
        check_key(idempotency_key)
        if "payload" not in params:
            raise PermanentError("webhook post needs params['payload'], the JSON to send")
        try:
            body = canonical_body(params["payload"])
        except (TypeError, ValueError) as exc:
            raise PermanentError(f"the payload for hook {name!r} is not plain JSON: {exc}") from exc
        secret = hook.secret.get_secret_value()
        status, headers, raw = await self._send(name, hook, "POST", hook.url, idempotency_key, body)
        verdict = classify(status, headers)
        shown = _parsed_body(raw, headers.get("Content-Type", ""), secret)
        log.info("webhook %s answered %s for key %s", name, status, idempotency_key)
        if verdict.outcome is Outcome.OK:
            return ActionResult(
                summary=f"{name} answered {status}", detail={"status": status, "body": shown}
            )
        quoted = shown if isinstance(shown, str) else _shown(json.dumps(shown), secret)
        reason = f"hook {name!r} answered {status}" + (f": {quoted}" if quoted else "")
        if verdict.outcome is Outcome.TRANSIENT:
            raise TransientError(reason, retry_after=verdict.retry_after)
        if 300 <= status < 400:
            reason += " (a redirect: point the hook's url at the final address)"
        raise PermanentError(reason)

    async def lookup(self, operation: str, params: dict[str, Any], idempotency_key: str) -> Lookup:
        """Ask the hook's ``status_url`` about the key: 200 done, 404 not done, else unknown.

        Never raises for the far side's failures: when the answer cannot be trusted the
        key is UNKNOWN and the operator decides. Bad params still raise PermanentError.
        """
        name, hook = self._hook(operation, params)
        check_key(idempotency_key)
        if hook.status_url is None:
            return Lookup(Known.UNKNOWN)
        url = hook.status_url.replace("{key}", quote(idempotency_key, safe=""))
        try:
            status, headers, raw = await self._send(name, hook, "GET", url, idempotency_key, b"")
        except TransientError as exc:
            log.warning("webhook %s status lookup for %s failed: %s", name, idempotency_key, exc)
            return Lookup(Known.UNKNOWN)
        log.info("webhook %s status for key %s: %s", name, idempotency_key, status)
        if status == 200:
            shown = _parsed_body(
                raw, headers.get("Content-Type", ""), hook.secret.get_secret_value()
            )
            return Lookup(
                Known.DONE,
                ActionResult(
                    summary=f"{name} already has it", detail={"status": status, "body": shown}
                ),
            )
        if status == 404:
            return Lookup(Known.NOT_DONE)
        return Lookup(Known.UNKNOWN)

    def endpoint(self, operation: str, params: Mapping[str, Any]) -> str:
        """The hook ``params`` name: each hook has its own circuit breaker."""
        name = params.get("hook")
        return name if isinstance(name, str) else ""

    def _hook(self, operation: str, params: Mapping[str, Any]) -> tuple[str, HookSettings]:
        if operation not in self.operations:
            raise PermanentError(
                f"the webhook connector has no operation {operation!r}; it has: post"
            )
        name = params.get("hook")
        hook = self._hooks.get(name) if isinstance(name, str) else None
        if hook is None or not isinstance(name, str):
            known = ", ".join(sorted(self._hooks)) or "none"
            raise PermanentError(
                f"no webhook named {name!r} is configured (configured: {known}); "
                "add it under [hooks.<name>] in your settings file or in SOLOOPS_HOOKS"
            )
        return name, hook

    async def _send(
        self, name: str, hook: HookSettings, method: str, url: str, key: str, body: bytes
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request with a whole-request deadline; transport failures become transient."""
        timestamp = int(self._clock())
        secret = hook.secret.get_secret_value()
        headers = {
            "Idempotency-Key": key,
            "User-Agent": USER_AGENT,
            "X-Soloops-Timestamp": str(timestamp),
            "X-Soloops-Signature": sign(secret, timestamp, key, body),
        }
        if method == "POST":
            headers["Content-Type"] = "application/json"
        request = self._client.build_request(
            method, url, content=body or None, headers=headers, timeout=hook.timeout_s
        )
        return await send_capped(
            self._client,
            request,
            what=f"hook {name!r}",
            deadline_s=hook.timeout_s,
            timeout_hint="; it may or may not have received the request",
            scrub=lambda text: _shown(text, secret),
            max_bytes=MAX_BODY_BYTES,
            truncate=True,
        )
