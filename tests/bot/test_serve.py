"""soloops's HTTP side wired to a running soloops: /healthz, /metrics and inbound hooks
end to end (real server on 127.0.0.1, real SQLite, the real gateway and coordinator)."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.console import ConsoleSender
from bot.http import HttpServer
from bot.runtime import Runtime, open_runtime
from bot.serve import http_wanted, model_state, scheduler_state, serve_http
from config import HttpSettings, InboundHookSettings, Settings
from connectors.webhook import canonical_body, sign
from memory.embedder import SentenceTransformerEmbedder

SECRET = "whsec-inbound-0123456789"


def signed(payload: Any, key: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A request body and headers exactly as soloops's outbound connector signs them."""
    body = canonical_body(payload)
    stamp = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Soloops-Timestamp": str(stamp),
        "X-Soloops-Signature": sign(secret, stamp, key, body),
    }


@dataclass
class Served:
    runtime: Runtime
    out: io.StringIO
    http: httpx.AsyncClient
    url: str

    async def post_hook(self, payload: Any, key: str, *, secret: str = SECRET) -> httpx.Response:
        body, headers = signed(payload, key, secret)
        return await self.http.post(f"{self.url}/hooks/site", content=body, headers=headers)

    async def count(self, sql: str, *args: object) -> int:
        return int(await self.runtime.store.scalar(sql, args))


@pytest.fixture
async def served(
    settings: Settings, embedder: SentenceTransformerEmbedder
) -> AsyncIterator[Served]:
    hooked = settings.model_copy(
        update={
            "inbound": {"site": InboundHookSettings(secret=SecretStr(SECRET), intent="remember")},
            "http": HttpSettings(port=0),
        }
    )
    out = io.StringIO()
    sender = ConsoleSender(out)
    server = HttpServer(hooked.http)
    async with (
        open_runtime(hooked, [sender], embedder=embedder) as runtime,
        serve_http(server, runtime, [sender]),
        httpx.AsyncClient() as http,
    ):
        yield Served(runtime, out, http, server.url)


async def test_a_signed_hook_is_stored_before_202_runs_once_and_reports_home(
    served: Served,
) -> None:
    answer = await served.post_hook({"text": "Acme wants a quote"}, "delivery-1")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"
    # Stored when answered: the message and its task are in the database already.
    assert await served.count("SELECT COUNT(*) FROM inbound WHERE platform = 'hook:site'") == 1
    assert await served.count("SELECT COUNT(*) FROM tasks") == 1
    await served.runtime.settle()
    assert await served.count("SELECT COUNT(*) FROM memories WHERE text = ?", "Acme wants a quote")
    printed = served.out.getvalue()
    assert "From hook 'site': a remember request came in" in printed
    assert "Remembered #1." in printed  # the agent's reply went to the home conversation

    replay = await served.post_hook({"text": "Acme wants a quote"}, "delivery-1")
    assert replay.status_code == 200
    assert replay.json()["status"] == "duplicate"
    await served.runtime.settle()
    assert await served.count("SELECT COUNT(*) FROM tasks") == 1
    assert await served.count("SELECT COUNT(*) FROM memories") == 1
    assert served.out.getvalue() == printed  # nothing new said


async def test_an_invalid_payload_is_422_naming_the_field_and_runs_nothing(
    served: Served,
) -> None:
    answer = await served.post_hook({"txt": "typo"}, "delivery-2")
    assert answer.status_code == 422
    message = answer.json()["message"]
    assert "field 'text'" in message and "field 'txt'" in message
    reserved = await served.post_hook({"text": "x", "conversation": {}}, "delivery-3")
    assert reserved.status_code == 422
    assert "field 'conversation' is set by soloops" in reserved.json()["message"]
    invalid = await served.runtime.events.query(kind="hook.invalid")
    assert [e.subject for e in invalid] == [
        "message:hook:site:delivery-2",
        "message:hook:site:delivery-3",
    ]
    assert await served.count("SELECT COUNT(*) FROM inbound") == 0
    assert await served.count("SELECT COUNT(*) FROM tasks") == 0


async def test_a_bad_signature_is_401_with_an_event(served: Served) -> None:
    answer = await served.post_hook({"text": "forged"}, "delivery-4", secret="x" * 24)
    assert answer.status_code == 401
    (refused,) = await served.runtime.events.query(kind="hook.refused")
    assert refused.payload["reason"] == "bad_signature"
    assert refused.actor == "hook:site"
    assert await served.count("SELECT COUNT(*) FROM tasks") == 0
    unknown = await served.http.post(f"{served.url}/hooks/nope", content=b"{}")
    assert unknown.status_code == 404


async def test_healthz_names_every_part_and_metrics_serve_soloops_series(
    served: Served,
) -> None:
    health = await served.http.get(f"{served.url}/healthz")
    body = health.json()
    assert set(body["parts"]) == {"database", "scheduler", "model", "console"}
    assert body["parts"]["database"]["ok"] is True
    assert body["parts"]["scheduler"]["detail"].startswith("running")
    assert body["parts"]["console"] == {**body["parts"]["console"], "ok": True}
    # The shared model may still be loading: that is healthy, and /healthz says which.
    assert body["parts"]["model"]["ok"] is True
    assert health.status_code == 200

    await served.post_hook({"text": "counted"}, "delivery-5")
    await served.runtime.settle()
    metrics = await served.http.get(f"{served.url}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'soloops_tasks{state="succeeded"} 1.0' in text
    assert "soloops_outbox_depth 0.0" in text
    assert "soloops_scheduler_lag_seconds" in text
    never = [line for line in text.splitlines() if line.startswith("soloops_digest_last")]
    assert never == []  # declared (HELP, TYPE), but no sample until a digest goes out

    await served.runtime.events.record("digest.sent", actor="digest", payload={})
    text = (await served.http.get(f"{served.url}/metrics")).text
    [sent] = [line for line in text.splitlines() if line.startswith("soloops_digest_last_sent")]
    assert float(sent.split()[1]) > 0


async def test_a_stopped_scheduler_makes_healthz_503_naming_it(served: Served) -> None:
    await served.runtime.scheduler.stop()
    answer = await served.http.get(f"{served.url}/healthz")
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["scheduler"]


def test_the_parts_decide_from_plain_data() -> None:
    assert scheduler_state(False, None) == (False, "not running")
    assert scheduler_state(True, 30.0)[0] is True
    assert scheduler_state(True, 3600.0) == (
        False,
        "running, but the oldest due job is 3600s late",
    )
    loading = SentenceTransformerEmbedder("/no/such/model")
    assert model_state(loading) == (True, "loading (/no/such/model)")


def test_http_is_served_only_when_something_needs_it(settings: Settings) -> None:
    assert not http_wanted(settings)
    assert http_wanted(settings.model_copy(update={"http": HttpSettings(enabled=True)}))
    hooks = {"site": InboundHookSettings(token=SecretStr("t" * 24), intent="remember")}
    assert http_wanted(settings.model_copy(update={"inbound": hooks}))
