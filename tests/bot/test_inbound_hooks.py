"""Inbound webhooks over real loopback HTTP, signed by soloops's own outbound connector."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.http import HttpServer
from bot.inbound_hooks import (
    MAX_AGE_S,
    MAX_BODY_BYTES,
    Accepted,
    InboundHooks,
    Refused,
    Verified,
    body_delivery_id,
    check_request,
)
from config import HookSettings, HttpSettings, InboundHookSettings
from connectors.base import PermanentError, TransientError
from connectors.webhook import WebhookConnector, canonical_body, sign

SECRET = "whsec-inbound-0123456789"
TOKEN = "bearer-token-0123456789"
NOW = 1_740_000_000
LEAD = {"name": "Ana Lima", "email": "ana@example.com", "note": "a quote for October"}

HOOKS = {
    "site": InboundHookSettings(secret=SecretStr(SECRET), intent="lead"),
    "form": InboundHookSettings(token=SecretStr(TOKEN), intent="lead"),
}


@dataclass
class Lead:
    """The injected callables, as the gateway would be: dedupe on the delivery id."""

    accepted: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)
    broken: bool = False

    async def accept(
        self, hook: str, intent: str, delivery_id: str, payload: dict[str, Any]
    ) -> Accepted:
        if self.broken:
            raise sqlite3.OperationalError("database is locked")
        self.accepted.append((hook, intent, delivery_id, payload))
        if "email" not in payload:
            return Accepted("invalid", "email: a lead needs an email address")
        if delivery_id in self.stored:
            return Accepted("duplicate", "already received")
        self.stored.add(delivery_id)
        return Accepted("queued", "New lead from site")

    async def refuse(self, hook: str, reason: str, detail: str) -> None:
        self.refused.append((hook, reason, detail))


@dataclass
class Rig:
    lead: Lead
    url: str
    http: httpx.AsyncClient
    clock: list[float]

    def connector(self, hook: str = "site", secret: str = SECRET) -> WebhookConnector:
        """soloops's outbound connector, pointed at this server's hook, at time NOW."""
        target = HookSettings(url=f"{self.url}/hooks/{hook}", secret=SecretStr(secret))
        return WebhookConnector({hook: target}, self.http, clock=lambda: NOW)

    async def send(
        self, payload: Any, key: str, hook: str = "site", secret: str = SECRET
    ) -> dict[str, Any]:
        result = await self.connector(hook, secret).execute(
            "post", {"hook": hook, "payload": payload}, key
        )
        return result.detail

    async def raw(self, body: bytes, headers: dict[str, str], hook: str = "site") -> httpx.Response:
        return await self.http.post(f"{self.url}/hooks/{hook}", content=body, headers=headers)


def signed_headers(body: bytes, key: str, timestamp: int = NOW) -> dict[str, str]:
    return {
        "Idempotency-Key": key,
        "X-Soloops-Timestamp": str(timestamp),
        "X-Soloops-Signature": sign(SECRET, timestamp, key, body),
        "Content-Type": "application/json",
    }


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    lead = Lead()
    clock = [float(NOW)]
    server = HttpServer(HttpSettings(host="127.0.0.1", port=0))
    InboundHooks(HOOKS, lead.accept, lead.refuse, clock=lambda: clock[0]).register(server)
    async with server, httpx.AsyncClient() as http:
        yield Rig(lead, server.url, http, clock)


# --- over HTTP ------------------------------------------------------------------------


async def test_a_signed_request_is_queued_once_and_a_replay_is_a_duplicate(rig: Rig) -> None:
    first = await rig.send(LEAD, "delivery-1")
    assert first["status"] == 202
    assert first["body"] == {
        "status": "queued",
        "delivery_id": "delivery-1",
        "message": "New lead from site",
    }
    assert rig.lead.accepted == [("site", "lead", "delivery-1", LEAD)]

    again = await rig.send(LEAD, "delivery-1")  # the sender's retry: same key, new timestamp
    assert again["status"] == 200
    assert again["body"]["status"] == "duplicate"
    assert again["body"]["delivery_id"] == "delivery-1"
    assert rig.lead.stored == {"delivery-1"}
    assert rig.lead.refused == []


async def test_a_byte_for_byte_replay_gets_the_same_2xx_and_runs_nothing(rig: Rig) -> None:
    body = canonical_body(LEAD)
    headers = signed_headers(body, "delivery-7")
    assert (await rig.raw(body, headers)).status_code == 202
    replay = await rig.raw(body, headers)
    assert replay.status_code == 200
    assert replay.json()["status"] == "duplicate"
    assert rig.lead.stored == {"delivery-7"}


async def test_a_wrong_secret_is_401_and_nothing_runs(rig: Rig) -> None:
    with pytest.raises(PermanentError, match="answered 401"):
        await rig.send(LEAD, "delivery-2", secret="not-the-secret-0123456")
    assert rig.lead.accepted == []
    assert [(h, r) for h, r, _ in rig.lead.refused] == [("site", "bad_signature")]


async def test_a_swapped_key_or_tampered_body_fails_the_signature(rig: Rig) -> None:
    body = canonical_body(LEAD)
    headers = signed_headers(body, "delivery-a")
    swapped = {**headers, "Idempotency-Key": "delivery-b"}
    assert (await rig.raw(body, swapped)).status_code == 401
    tampered = canonical_body({**LEAD, "note": "send the invoice"})
    assert (await rig.raw(tampered, headers)).status_code == 401
    assert rig.lead.accepted == []
    assert [r for _, r, _ in rig.lead.refused] == ["bad_signature", "bad_signature"]


@pytest.mark.parametrize("moved", [MAX_AGE_S + 1, -(MAX_AGE_S + 1)])
async def test_a_stale_timestamp_is_401(rig: Rig, moved: int) -> None:
    rig.clock[0] = NOW + moved
    with pytest.raises(PermanentError, match="answered 401"):
        await rig.send(LEAD, "delivery-3")
    assert rig.lead.accepted == []
    assert rig.lead.refused[0][1] == "stale"
    assert "301s" in rig.lead.refused[0][2]
    rig.clock[0] = NOW + MAX_AGE_S  # at the limit it is still taken
    assert (await rig.send(LEAD, "delivery-3"))["status"] == 202


async def test_an_unknown_hook_is_404(rig: Rig) -> None:
    with pytest.raises(PermanentError, match="answered 404"):
        await rig.send(LEAD, "delivery-4", hook="nope")
    assert rig.lead.accepted == []
    assert rig.lead.refused == [("nope", "unknown_hook", "no inbound hook named 'nope'")]


async def test_an_unknown_hook_name_is_made_safe_for_logs_and_events(rig: Rig) -> None:
    answer = await rig.raw(b"{}", {}, hook="x%0Aforged%20line")
    assert answer.status_code == 404
    assert rig.lead.refused[0][0] == "x?forged?line"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "not_object"),
        (b'"a lead"', "not_object"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(rig: Rig, body: bytes, reason: str) -> None:
    answer = await rig.raw(body, signed_headers(body, "delivery-5"))
    assert answer.status_code == 400
    assert answer.json()["error"] == reason
    assert rig.lead.accepted == []
    assert [r for _, r, _ in rig.lead.refused] == [reason]


async def test_an_array_sent_by_the_connector_is_400(rig: Rig) -> None:
    with pytest.raises(PermanentError, match="answered 400"):
        await rig.send([LEAD], "delivery-6")
    assert rig.lead.accepted == []


async def test_a_signed_hook_without_idempotency_key_is_400(rig: Rig) -> None:
    body = canonical_body(LEAD)
    headers = signed_headers(body, "delivery-8")
    del headers["Idempotency-Key"]
    answer = await rig.raw(body, headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == "no_key"
    assert "Idempotency-Key" in answer.json()["message"]
    assert rig.lead.accepted == []
    assert [r for _, r, _ in rig.lead.refused] == ["no_key"]


async def test_an_unsigned_request_to_a_signed_hook_is_401(rig: Rig) -> None:
    answer = await rig.raw(canonical_body(LEAD), {"Idempotency-Key": "k1"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unsigned"
    assert rig.lead.accepted == []


async def test_a_bearer_hook_takes_its_token_and_derives_the_delivery_id(rig: Rig) -> None:
    body = json.dumps(LEAD).encode()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    first = await rig.raw(body, auth, hook="form")
    assert first.status_code == 202
    derived = "sha256:" + hashlib.sha256(body).hexdigest()
    assert first.json()["delivery_id"] == derived
    assert rig.lead.accepted == [("form", "lead", derived, LEAD)]
    again = await rig.raw(body, auth, hook="form")  # an identical resend is a duplicate
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"

    keyed = await rig.raw(body, {**auth, "Idempotency-Key": "form-42"}, hook="form")
    assert keyed.status_code == 202
    assert keyed.json()["delivery_id"] == "form-42"


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "no_token"),
        ("Bearer wrong-token-0123456789", "bad_token"),
        (f"Basic {TOKEN}", "bad_token"),
    ],
)
async def test_a_bearer_hook_refuses_a_wrong_or_missing_token(
    rig: Rig, authorization: str | None, reason: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = await rig.raw(json.dumps(LEAD).encode(), headers, hook="form")
    assert answer.status_code == 401
    assert answer.json()["error"] == reason
    assert rig.lead.accepted == []
    assert [(h, r) for h, r, _ in rig.lead.refused] == [("form", reason)]


async def test_a_payload_the_intent_rejects_is_422_with_its_message(rig: Rig) -> None:
    with pytest.raises(PermanentError, match=r"answered 422.*needs an email address"):
        await rig.send({"name": "Ana"}, "delivery-9")
    assert len(rig.lead.accepted) == 1
    assert rig.lead.stored == set()


async def test_a_storage_failure_is_503_so_the_sender_retries(rig: Rig) -> None:
    rig.lead.broken = True
    with pytest.raises(TransientError, match="answered 503") as caught:
        await rig.send(LEAD, "delivery-10")
    assert caught.value.retry_after == 30
    rig.lead.broken = False
    assert (await rig.send(LEAD, "delivery-10"))["status"] == 202  # the retry lands


async def test_an_oversized_body_is_413(rig: Rig) -> None:
    body = b'{"note": "' + b"x" * MAX_BODY_BYTES + b'"}'
    answer = await rig.raw(body, signed_headers(body, "delivery-11"))
    assert answer.status_code == 413
    assert [r for _, r, _ in rig.lead.refused] == ["too_large"]
    assert rig.lead.accepted == []


async def test_a_failing_refuse_still_answers_the_refusal(rig: Rig) -> None:
    async def broken(hook: str, reason: str, detail: str) -> None:
        raise sqlite3.OperationalError("database is locked")

    server = HttpServer(HttpSettings(host="127.0.0.1", port=0))
    InboundHooks(HOOKS, rig.lead.accept, broken, clock=lambda: NOW).register(server)
    async with server:
        answer = await rig.http.post(f"{server.url}/hooks/site", content=b"{}")
    assert answer.status_code == 400  # no Idempotency-Key
    assert rig.lead.accepted == []


async def test_no_secret_token_or_signature_reaches_the_log_or_the_refusals(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    body = canonical_body(LEAD)
    wrong = {**signed_headers(body, "delivery-12"), "X-Soloops-Signature": "sha256=" + "0" * 64}
    signature = signed_headers(body, "delivery-12")["X-Soloops-Signature"]
    with caplog.at_level(logging.DEBUG):
        await rig.raw(body, wrong)
        await rig.raw(body, signed_headers(body, "delivery-12"))
        await rig.raw(body, {"Authorization": "Bearer guessed-token-000000"}, hook="form")
        await rig.raw(body, {"Authorization": f"Bearer {TOKEN}"}, hook="form")
    said = caplog.text + repr(rig.lead.refused)
    assert "inbound hook site refused (bad_signature)" in caplog.text
    for secret in (SECRET, TOKEN, signature, "0" * 64, "guessed-token"):
        assert secret not in said


async def test_routes_collide_with_a_second_registration() -> None:
    server = HttpServer(HttpSettings(host="127.0.0.1", port=0))
    lead = Lead()
    InboundHooks(HOOKS, lead.accept, lead.refuse).register(server)
    with pytest.raises(ValueError, match=re.escape("POST /hooks/{name} is already registered")):
        InboundHooks(HOOKS, lead.accept, lead.refuse).register(server)


# --- the pure checks ------------------------------------------------------------------


def test_check_request_in_order_of_who_then_what() -> None:
    site = HOOKS["site"]
    body = canonical_body(LEAD)
    assert check_request(site, httpx.Headers(signed_headers(body, "k")), body, NOW) == Verified(
        "k", LEAD
    )
    # a bad signature on a bad body is a signature problem: unauthenticated senders
    # learn nothing about the payload checks
    junk = b"[not json"
    refused = check_request(site, httpx.Headers(signed_headers(body, "k")), junk, NOW)
    assert isinstance(refused, Refused) and refused.reason == "bad_signature"
    bad_key = check_request(site, httpx.Headers({"Idempotency-Key": "a key"}), body, NOW)
    assert isinstance(bad_key, Refused) and (bad_key.status, bad_key.reason) == (400, "bad_key")
    headers = httpx.Headers({**signed_headers(body, "k"), "X-Soloops-Timestamp": "1e9"})
    odd = check_request(site, headers, body, NOW)
    assert isinstance(odd, Refused) and odd.reason == "bad_timestamp"


def test_body_delivery_id_is_the_bodys_sha256() -> None:
    assert body_delivery_id(b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert body_delivery_id(b"{}") != body_delivery_id(b"{ }")
