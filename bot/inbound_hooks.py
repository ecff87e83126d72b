"""Inbound webhooks: ``POST /hooks/<name>`` turns a JSON object into an intent.

    sender --POST /hooks/site--> check_request (pure) --refused--> refuse(...) -> 4xx
                                    | verified
                                    v
                                 accept(hook, intent, delivery id, payload)
                                    -> queued 202 | duplicate 200 | invalid 422
                                    -> raises: 503 (not stored; the sender retries)

A hook configured with ``secret`` takes requests signed exactly as soloops signs its
own outbound hooks (:func:`connectors.webhook.sign`): ``Idempotency-Key`` is the
delivery id, ``X-Soloops-Timestamp`` the Unix time, and ``X-Soloops-Signature``
``sha256=`` + hex HMAC-SHA256 of ``"{timestamp}\\n{delivery id}\\n" + body``; a
timestamp more than :data:`MAX_AGE_S` from now is refused. A hook configured with
``token`` takes ``Authorization: Bearer <token>``; without an ``Idempotency-Key`` its
delivery id is ``sha256:`` + the body's SHA-256, so a resent identical body is a
duplicate.

``accept`` stores the request (deduped on the delivery id) before the answer, so a 2xx
means soloops has it; the work runs afterwards. Nothing runs for a refused request:
``refuse`` records why (the reason is a short code; the detail names no secret and no
signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from bot.http import HttpServer, read_body
from config import InboundHookSettings
from connectors.webhook import sign

log = logging.getLogger(__name__)

PATH = "/hooks/{name}"
MAX_AGE_S = 300  # as outbound: a signed request older (or newer) than 5 minutes is stale
MAX_BODY_BYTES = 64 * 1024
_KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,200}$")  # as outbound keys: visible ASCII
_NAME_SHOWN = 40
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``accept`` did with a verified request.

    ``queued``: stored, the work will run (202). ``duplicate``: this delivery id was
    stored before, nothing new runs (200). ``invalid``: the payload does not fit the
    hook's intent; ``message`` says what is wrong (422).
    """

    status: Literal["queued", "duplicate", "invalid"]
    message: str = ""


Accept = Callable[[str, str, str, dict[str, Any]], Awaitable[Accepted]]
"""``accept(hook, intent_kind, delivery_id, payload)``: store the request, or raise if it
could not be stored (answered 503, so the sender retries)."""

Refuse = Callable[[str, str, str], Awaitable[None]]
"""``refuse(hook, reason, detail)``: record a refused request (reason: a short code)."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed every check."""

    delivery_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    """A request refused before anything ran: the HTTP status, a code and a message."""

    status: int
    reason: str
    message: str


# --- pure checks ----------------------------------------------------------------------


def signature_problem(
    secret: str,
    timestamp: str | None,
    key: str,
    signature: str | None,
    body: bytes,
    now: float,
    max_age_s: float = MAX_AGE_S,
) -> Refused | None:
    """Why a signed request is not from the holder of ``secret``, or None if it is."""
    if not timestamp or not signature:
        return Refused(401, "unsigned", "X-Soloops-Timestamp and X-Soloops-Signature are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return Refused(401, "bad_timestamp", "X-Soloops-Timestamp must be Unix seconds")
    age = now - int(timestamp)
    if abs(age) > max_age_s:
        return Refused(
            401,
            "stale",
            f"the timestamp is {abs(age):.0f}s {'old' if age > 0 else 'ahead'}; "
            f"at most {max_age_s:g}s is accepted (check the sender's clock)",
        )
    expected = sign(secret, int(timestamp), key, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return Refused(401, "bad_signature", "the signature does not match this hook's secret")
    return None


def token_problem(token: str, authorization: str | None) -> Refused | None:
    """Why ``Authorization`` does not carry the bearer ``token``, or None if it does."""
    if not authorization:
        return Refused(401, "no_token", "Authorization: Bearer <token> is required")
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return Refused(401, "bad_token", "the bearer token is not this hook's token")
    return None


def body_delivery_id(body: bytes) -> str:
    """The delivery id of a bearer request without ``Idempotency-Key``: the body's hash."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def parse_payload(body: bytes) -> dict[str, Any] | Refused:
    """The body as a JSON object, or why it is not one."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Refused(400, "bad_json", "the body is not valid UTF-8 JSON")
    if not isinstance(parsed, dict):
        return Refused(
            400, "not_object", f"the body must be a JSON object, not a {type(parsed).__name__}"
        )
    return parsed


def check_request(
    hook: InboundHookSettings, headers: Mapping[str, str], body: bytes, now: float
) -> Verified | Refused:
    """Every check of one request to a configured hook, in order: who sent it, then what.

    ``headers`` must look names up case-insensitively (as aiohttp's and httpx's do).
    """
    key = headers.get("Idempotency-Key")
    if key is not None and not _KEY_CHARS.match(key):
        return Refused(400, "bad_key", "Idempotency-Key must be 1-200 visible ASCII characters")
    if hook.secret is not None:
        if key is None:
            return Refused(
                400, "no_key", "Idempotency-Key is required: the delivery id, signed with the body"
            )
        problem = signature_problem(
            hook.secret.get_secret_value(),
            headers.get("X-Soloops-Timestamp"),
            key,
            headers.get("X-Soloops-Signature"),
            body,
            now,
        )
    else:
        assert hook.token is not None  # the settings hold exactly one of the two
        problem = token_problem(hook.token.get_secret_value(), headers.get("Authorization"))
    if problem is not None:
        return problem
    payload = parse_payload(body)
    if isinstance(payload, Refused):
        return payload
    return Verified(key if key is not None else body_delivery_id(body), payload)


# --- the HTTP handler -----------------------------------------------------------------


class InboundHooks:
    """Serves ``POST /hooks/{name}`` for the configured hooks.

    Args:
        hooks: the configured inbound hooks by name (``Settings.inbound``).
        accept: stores a verified request (see :data:`Accept`).
        refuse: records a refused one (see :data:`Refuse`).
        clock: Unix seconds, for the signature's age (tests move it).
    """

    def __init__(
        self,
        hooks: Mapping[str, InboundHookSettings],
        accept: Accept,
        refuse: Refuse,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hooks = dict(hooks)
        self._accept = accept
        self._refuse = refuse
        self._clock = clock

    def register(self, server: HttpServer) -> None:
        """Add ``POST /hooks/{name}`` to ``server`` (before it starts)."""
        server.add_route("POST", PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one request (see the module docstring for the statuses)."""
        name = request.match_info.get("name", "")
        hook = self._hooks.get(name)
        if hook is None:
            shown = _UNSAFE.sub("?", name[:_NAME_SHOWN])  # it goes to the log and events
            return await self._refused(
                shown, Refused(404, "unknown_hook", f"no inbound hook named {shown!r}")
            )
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except web.HTTPRequestEntityTooLarge:
            return await self._refused(
                name,
                Refused(413, "too_large", f"the body is over {MAX_BODY_BYTES // 1024} KiB"),
            )
        checked = check_request(hook, request.headers, body, self._clock())
        if isinstance(checked, Refused):
            return await self._refused(name, checked)
        try:
            accepted = await self._accept(name, hook.intent, checked.delivery_id, checked.payload)
        except Exception as exc:  # not stored: say so, the sender retries
            log.error(
                "inbound hook %s: could not store delivery %s (%s)",
                name,
                checked.delivery_id,
                type(exc).__name__,
            )
            return _answer(
                503,
                {"error": "unavailable", "message": "not stored; try again later"},
                {"Retry-After": "30"},
            )
        log.info("inbound hook %s: delivery %s %s", name, checked.delivery_id, accepted.status)
        if accepted.status == "invalid":
            return _answer(422, {"error": "invalid", "message": accepted.message})
        return _answer(
            202 if accepted.status == "queued" else 200,
            {
                "status": accepted.status,
                "delivery_id": checked.delivery_id,
                "message": accepted.message,
            },
        )

    async def _refused(self, name: str, refused: Refused) -> web.Response:
        # The reason and message are ours: they never quote a header or the body.
        log.warning("inbound hook %s refused (%s): %s", name, refused.reason, refused.message)
        try:
            await self._refuse(name, refused.reason, refused.message)
        except Exception as exc:  # the answer must not depend on the record
            log.error("inbound hook %s: could not record a refusal (%s)", name, type(exc).__name__)
        return _answer(refused.status, {"error": refused.reason, "message": refused.message})


def _answer(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )
