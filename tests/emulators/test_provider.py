"""The loopback provider's own promises, which the crash harness relies on."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from connectors.base import Known, TransientError
from connectors.webhook import WebhookConnector
from tests.emulators.provider import Provider


async def test_a_naive_receiver_processes_every_repeat() -> None:
    async with Provider(dedupe=False) as naive, WebhookConnector({"crm": naive.hook()}) as hook:
        for _ in range(3):
            await hook.execute("post", {"hook": "crm", "payload": {}}, "k1")
        assert naive.process_counts["k1"] == 3
        assert naive.deliveries("k1") == 3
        assert naive.duplicates() == ["k1"]


async def test_failing_after_processing_lands_the_request(provider: Provider) -> None:
    provider.fail_next(1, status=502, after_processing=True)
    async with WebhookConnector({"crm": provider.hook()}) as hook:
        with pytest.raises(TransientError, match="502"):
            await hook.execute("post", {"hook": "crm", "payload": {}}, "k1")
        assert (await hook.lookup("post", {"hook": "crm"}, "k1")).known is Known.DONE
        again = await hook.execute("post", {"hook": "crm", "payload": {}}, "k1")
    assert again.detail["body"]["id"] == "evt_1"
    assert [d.processed for d in provider.received["k1"]] == [True, False]
    assert provider.duplicates() == ["k1"]  # the retry is visible even though harmless


async def test_scripts_are_consumed_in_order_per_path(provider: Provider) -> None:
    provider.fail_next(1, status=500, path="/a")
    provider.fail_next(1, status=429, retry_after=3, path="/a")
    async with httpx.AsyncClient() as client:
        other = await client.post(provider.url + "/b", headers={"Idempotency-Key": "x"})
        first = await client.post(provider.url + "/a", headers={"Idempotency-Key": "x"})
        second = await client.post(provider.url + "/a", headers={"Idempotency-Key": "x"})
    assert other.status_code == 401  # unsigned: refused
    assert (first.status_code, second.status_code) == (500, 429)  # the proxy fails first
    assert second.headers["Retry-After"] == "3"


async def test_a_refused_request_leaves_a_landing_script_queued(provider: Provider) -> None:
    provider.fail_next(1, status=500, after_processing=True)
    async with httpx.AsyncClient() as client:
        refused = await client.post(provider.hook_url, headers={"Idempotency-Key": "x"})
    assert refused.status_code == 401
    async with WebhookConnector({"crm": provider.hook()}) as hook:
        with pytest.raises(TransientError, match="500"):
            await hook.execute("post", {"hook": "crm", "payload": {}}, "k1")
    assert provider.process_counts["k1"] == 1


@pytest.mark.slow
def test_it_runs_standalone() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.provider", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            answer = httpx.get(url + "/status/nothing")
            assert answer.status_code == 404
        finally:
            server.terminate()
        assert server.wait(timeout=10) == 0
