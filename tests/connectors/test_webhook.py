"""The webhook connector over real HTTP to the loopback provider, and its pure parts."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from config import HookSettings
from connectors.base import Connector, Known, PermanentError, TransientError
from connectors.webhook import (
    USER_AGENT,
    Outcome,
    Verdict,
    WebhookConnector,
    canonical_body,
    classify,
    parse_retry_after,
    sign,
)
from tests.emulators.provider import DEFAULT_SECRET, Provider

SECRET = DEFAULT_SECRET


@pytest.fixture
async def webhook(provider: Provider) -> AsyncIterator[WebhookConnector]:
    hooks = {
        "crm": provider.hook(),
        "bare": provider.hook("/bare", status=False),
        "quick": provider.hook("/quick", timeout_s=0.3),
    }
    async with WebhookConnector(hooks) as connector:
        yield connector


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- pure functions -------------------------------------------------------------------


def test_sign_is_hmac_sha256_over_timestamp_key_and_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", b"1700000000\nk-1\n" + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, "k-1", body) == "sha256=" + expected
    assert sign(b"s3cret", 1700000000, "k-1", body) == "sha256=" + expected
    assert sign("s3cret", 1700000001, "k-1", body) != sign("s3cret", 1700000000, "k-1", body)
    assert sign("s3cret", 1700000000, "k-2", body) != sign("s3cret", 1700000000, "k-1", body)


def test_canonical_body_is_compact_sorted_ascii() -> None:
    assert canonical_body({"b": 1, "a": ["é", None]}) == b'{"a":["\\u00e9",null],"b":1}'
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_body({"x": float("nan")})


@pytest.mark.parametrize(
    ("status", "headers", "verdict"),
    [
        (200, {}, Verdict(Outcome.OK)),
        (204, {}, Verdict(Outcome.OK)),
        (500, {}, Verdict(Outcome.TRANSIENT)),
        (502, {"Retry-After": "7"}, Verdict(Outcome.TRANSIENT, 7.0)),
        (503, {"Retry-After": "120"}, Verdict(Outcome.TRANSIENT, 120.0)),
        (429, {"Retry-After": "2"}, Verdict(Outcome.TRANSIENT, 2.0)),
        (429, {"Retry-After": "soon"}, Verdict(Outcome.TRANSIENT, None)),
        (408, {}, Verdict(Outcome.TRANSIENT)),
        (400, {"Retry-After": "2"}, Verdict(Outcome.PERMANENT)),
        (401, {}, Verdict(Outcome.PERMANENT)),
        (404, {}, Verdict(Outcome.PERMANENT)),
        (422, {}, Verdict(Outcome.PERMANENT)),
        (301, {}, Verdict(Outcome.PERMANENT)),
    ],
)
def test_classify(status: int, headers: dict[str, str], verdict: Verdict) -> None:
    assert classify(status, headers) == verdict


def test_retry_after_as_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0  # past: now
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after("inf", now=now) is None
    verdict = classify(503, {"Retry-After": "Wed, 01 Jan 2025 12:01:00 GMT"}, now=now)
    assert verdict == Verdict(Outcome.TRANSIENT, 60.0)


async def test_it_fulfils_the_connector_contract() -> None:
    connector: Connector = WebhookConnector({})
    assert (connector.name, connector.version, connector.operations) == (
        "webhook",
        "1",
        frozenset({"post"}),
    )
    await connector.aclose()


# --- over HTTP ------------------------------------------------------------------------


async def test_post_delivers_a_signed_request_with_the_key(
    webhook: WebhookConnector, provider: Provider
) -> None:
    payload = {"lead": "Ada", "amount": 120, "tags": ["new"]}
    result = await webhook.execute("post", {"hook": "crm", "payload": payload}, "task-1:act-0")

    assert result.summary == "crm answered 200"
    assert result.detail == {
        "status": 200,
        "body": {"ok": True, "id": "evt_1", "key": "task-1:act-0"},
    }
    [delivery] = provider.received["task-1:act-0"]
    assert delivery.signature_valid
    assert delivery.processed
    assert delivery.path == "/hook"
    assert delivery.json() == payload
    assert delivery.body == canonical_body(payload)
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("soloops/")
    assert int(delivery.headers["X-Soloops-Timestamp"]) == pytest.approx(
        datetime.now(UTC).timestamp(), abs=5
    )


async def test_a_repeated_key_is_answered_but_not_processed_again(
    webhook: WebhookConnector, provider: Provider
) -> None:
    params = {"hook": "crm", "payload": {"n": 1}}
    first = await webhook.execute("post", params, "k1")
    second = await webhook.execute("post", params, "k1")
    assert first == second
    assert provider.deliveries("k1") == 2
    assert provider.process_counts["k1"] == 1
    assert provider.duplicates() == ["k1"]
    assert provider.received["k1"][1].replayed


async def test_a_wrong_secret_is_refused_by_the_receiver(provider: Provider) -> None:
    hooks = {"crm": provider.hook(secret="not-the-providers-secret")}
    async with WebhookConnector(hooks) as webhook:
        with pytest.raises(PermanentError, match="answered 401"):
            await webhook.execute("post", {"hook": "crm", "payload": {}}, "k1")
    [delivery] = provider.received["k1"]
    assert not delivery.signature_valid
    assert not delivery.processed


async def test_5xx_is_transient_and_a_retry_then_lands(
    webhook: WebhookConnector, provider: Provider
) -> None:
    provider.fail_next(2, status=500, body="database is down")
    params = {"hook": "crm", "payload": {"n": 1}}
    for _ in range(2):
        with pytest.raises(TransientError, match="'crm' answered 500: database is down") as err:
            await webhook.execute("post", params, "k1")
        assert err.value.retry_after is None
    await webhook.execute("post", params, "k1")
    assert provider.deliveries("k1") == 3
    assert provider.process_counts["k1"] == 1
    assert provider.duplicates() == []


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_passed_on(
    webhook: WebhookConnector, provider: Provider, status: int
) -> None:
    provider.fail_next(1, status=status, retry_after=2)
    with pytest.raises(TransientError, match=f"answered {status}") as err:
        await webhook.execute("post", {"hook": "crm", "payload": {}}, "k1")
    assert err.value.retry_after == 2


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_are_permanent_with_status_and_body(
    webhook: WebhookConnector, provider: Provider, status: int
) -> None:
    provider.fail_next(1, status=status, body="field 'email' is required\n" + "x" * 2000)
    with pytest.raises(PermanentError) as err:
        await webhook.execute("post", {"hook": "crm", "payload": {}}, "k1")
    message = str(err.value)
    assert f"hook 'crm' answered {status}: field 'email' is required" in message
    assert len(message) < 400


async def test_a_hanging_receiver_is_a_transient_timeout(
    webhook: WebhookConnector, provider: Provider
) -> None:
    provider.hang_next(1, path="/quick")
    with pytest.raises(TransientError, match=r"did not answer within 0\.3s") as err:
        await webhook.execute("post", {"hook": "quick", "payload": {}}, "k1")
    assert isinstance(err.value.__cause__, TimeoutError | httpx.TimeoutException)
    assert provider.deliveries("k1") == 1


async def test_a_refused_connection_is_transient() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    hooks = {"crm": HookSettings.model_validate({"url": url, "secret": SECRET})}
    async with WebhookConnector(hooks) as webhook:
        with pytest.raises(TransientError, match="could not reach hook 'crm' \\(ConnectError"):
            await webhook.execute("post", {"hook": "crm", "payload": {}}, "k1")


async def test_an_unknown_hook_is_permanent_and_names_the_configured_ones(
    webhook: WebhookConnector, provider: Provider
) -> None:
    with pytest.raises(PermanentError, match=r"'billing'.*configured: bare, crm, quick"):
        await webhook.execute("post", {"hook": "billing", "payload": {}}, "k1")
    assert provider.requests == []


@pytest.mark.parametrize(
    ("operation", "params", "key", "says"),
    [
        ("delete", {"hook": "crm", "payload": {}}, "k1", "no operation 'delete'"),
        ("post", {"hook": "crm"}, "k1", r"params\['payload'\]"),
        ("post", {"hook": "crm", "payload": {"at": datetime.now(UTC)}}, "k1", "not plain JSON"),
        ("post", {"hook": "crm", "payload": {}}, "bad\nkey", "idempotency key"),
        ("post", {"hook": "crm", "payload": {}}, "", "idempotency key"),
    ],
)
async def test_bad_calls_are_permanent(
    webhook: WebhookConnector,
    provider: Provider,
    operation: str,
    params: dict[str, object],
    key: str,
    says: str,
) -> None:
    with pytest.raises(PermanentError, match=says):
        await webhook.execute(operation, dict(params), key)
    assert provider.requests == []


async def test_lookup_done_not_done_and_unknown(
    webhook: WebhookConnector, provider: Provider
) -> None:
    assert (await webhook.lookup("post", {"hook": "crm"}, "k1")).known is Known.NOT_DONE
    await webhook.execute("post", {"hook": "crm", "payload": {"n": 1}}, "k1")
    found = await webhook.lookup("post", {"hook": "crm"}, "k1")
    assert found.known is Known.DONE
    assert found.result is not None
    assert found.result.detail["body"]["id"] == "evt_1"
    # no status_url: cannot tell
    assert (await webhook.lookup("post", {"hook": "bare"}, "k1")).known is Known.UNKNOWN
    [status_get] = [r for r in provider.requests if r.method == "GET" and r.status == 200]
    assert status_get.signature_valid  # lookups are signed too (over an empty body)


async def test_lookup_is_unknown_when_the_status_endpoint_fails(
    webhook: WebhookConnector, provider: Provider
) -> None:
    provider.fail_next(1, status=500, path="/status")
    assert (await webhook.lookup("post", {"hook": "crm"}, "k1")).known is Known.UNKNOWN
    hooks = {
        "gone": HookSettings.model_validate(
            {
                "url": "http://127.0.0.1:1/hook",
                "secret": SECRET,
                "status_url": f"http://127.0.0.1:{closed_port()}/status/{{key}}",
            }
        )
    }
    async with WebhookConnector(hooks) as unreachable:
        assert (await unreachable.lookup("post", {"hook": "gone"}, "k1")).known is Known.UNKNOWN


async def test_a_landed_request_whose_answer_was_lost_is_found_by_lookup(
    webhook: WebhookConnector, provider: Provider
) -> None:
    """The crash case: the receiver processed it, soloops never heard back."""
    provider.hang_next(1, path="/quick", after_processing=True)
    with pytest.raises(TransientError, match="may or may not"):
        await webhook.execute("post", {"hook": "quick", "payload": {}}, "k1")
    assert provider.process_counts["k1"] == 1
    assert (await webhook.lookup("post", {"hook": "crm"}, "k1")).known is Known.DONE


async def test_the_secret_never_appears_in_errors_results_or_logs(
    provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused = f"http://127.0.0.1:{closed_port()}/hook"
    hooks = {
        "crm": provider.hook(),
        "down": HookSettings.model_validate({"url": refused, "secret": SECRET}),
    }
    seen: list[str] = []
    async with WebhookConnector(hooks) as webhook:
        # a careless receiver echoing the secret back must not leak it either
        provider.fail_next(1, status=400, body=f"bad request, secret was {SECRET}")
        provider.fail_next(1, status=500, body=SECRET)
        for expected in (PermanentError, TransientError):
            with pytest.raises(expected) as err:
                await webhook.execute("post", {"hook": "crm", "payload": {}}, "k1")
            seen.append(str(err.value))
        with pytest.raises(TransientError) as err:
            await webhook.execute("post", {"hook": "down", "payload": {}}, "k1")
        seen.append(str(err.value))
        with pytest.raises(PermanentError) as err:
            await webhook.execute("post", {"hook": "nope", "payload": {}}, "k1")
        seen.append(str(err.value))
        result = await webhook.execute("post", {"hook": "crm", "payload": {"s": SECRET}}, "k2")
        seen.append(json.dumps(result.detail) + result.summary)
        seen.append(repr(hooks))
    seen.extend(record.getMessage() for record in caplog.records)
    assert "[redacted]" in seen[0]
    assert all(SECRET not in text for text in seen), seen


async def test_a_client_passed_in_stays_open(provider: Provider) -> None:
    async with httpx.AsyncClient() as client:
        connector = WebhookConnector({"crm": provider.hook()}, client)
        await connector.aclose()
        assert not client.is_closed
        await connector.execute("post", {"hook": "crm", "payload": {}}, "k1")


async def test_random_failures_are_seeded(provider: Provider) -> None:
    provider.fail_rate = 0.5
    outcomes = []
    async with WebhookConnector({"crm": provider.hook()}) as webhook:
        for n in range(20):
            try:
                await webhook.execute("post", {"hook": "crm", "payload": {}}, f"k{n}")
                outcomes.append(True)
            except TransientError:
                outcomes.append(False)
    assert 0 < sum(outcomes) < 20
    assert sorted(provider.processed) == sorted(f"k{n}" for n, ok in enumerate(outcomes) if ok)


def test_the_readme_receiver_snippet_verifies_a_signed_request() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Webhooks (outbound)") :]
    snippet = section[section.index("```python\n") + 10 :]
    snippet = snippet[: snippet.index("```")]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the documented code, as a receiver would paste it
    verify = namespace["verify"]

    body = canonical_body({"n": 1})
    now = int(time.time())
    headers = {
        "X-Soloops-Timestamp": str(now),
        "Idempotency-Key": "k1",
        "X-Soloops-Signature": sign(SECRET, now, "k1", body),
    }
    assert verify(SECRET.encode(), headers, body)
    assert not verify(SECRET.encode(), {**headers, "Idempotency-Key": "k2"}, body)
    assert not verify(SECRET.encode(), headers, body + b" ")
    old = {**headers, "X-Soloops-Timestamp": str(now - 600)}
    old["X-Soloops-Signature"] = sign(SECRET, now - 600, "k1", body)
    assert not verify(SECRET.encode(), old, body)
