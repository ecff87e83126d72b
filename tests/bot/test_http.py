"""The shared HTTP server, /healthz and /metrics, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from aiohttp import web

from bot.health import METRICS_CONTENT_TYPE, Health, PartState, add_health_routes, verdict
from bot.http import HttpServer, read_body
from config import ConfigError, HttpSettings, Settings
from memory.clock import ManualClock

LOCAL = HttpSettings(host="127.0.0.1", port=0)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def test_port_zero_binds_a_free_port_and_serves_routes() -> None:
    server = HttpServer(LOCAL)
    server.add_route("GET", "/hello", hello)
    async with server:
        assert server.address is not None
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/hello")).text == "hello"
            assert (await client.get("/nothing")).status_code == 404
    assert server.address is None


async def test_a_busy_port_fails_the_start_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = HttpServer(HttpSettings(host="127.0.0.1", port=taken.getsockname()[1]))
        with pytest.raises(ConfigError, match="SOLOOPS_HTTP__PORT") as caught:
            await server.start()
        assert f":{taken.getsockname()[1]}" in str(caught.value)
        assert not server.started


def test_route_collisions_are_refused() -> None:
    server = HttpServer(LOCAL)
    server.add_route("POST", "/slack/events", hello)
    server.add_route("GET", "/slack/events", hello)  # another method is another route
    with pytest.raises(ValueError, match="POST /slack/events is already registered"):
        server.add_route("post", "/slack/events", hello)
    with pytest.raises(ValueError, match="already registered"):
        server.add_route("*", "/slack/events", hello)
    server.add_subapp("/telegram", web.Application())
    with pytest.raises(ValueError, match="collides with the app mounted at /telegram"):
        server.add_route("POST", "/telegram/webhook", hello)
    with pytest.raises(ValueError, match="prefix /telegram/x collides"):
        server.add_subapp("/telegram/x", web.Application())
    with pytest.raises(ValueError, match="prefix /slack collides with route"):
        server.add_subapp("/slack", web.Application())
    assert server.paths() == ["* /telegram/*", "GET /slack/events", "POST /slack/events"]


async def test_routes_cannot_be_added_after_the_start() -> None:
    server = HttpServer(LOCAL)
    async with server:
        with pytest.raises(RuntimeError, match="before the HTTP server starts"):
            server.add_route("GET", "/late", hello)


async def test_a_mounted_subapp_serves_below_its_prefix() -> None:
    sub = web.Application()
    sub.router.add_get("/ping", hello)
    server = HttpServer(LOCAL)
    server.add_subapp("/telegram/", sub)
    async with server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/telegram/ping")).text == "hello"


async def test_a_failing_handler_is_a_plain_500_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise KeyError("row 7 in\nsecret place")

    server = HttpServer(LOCAL)
    server.add_route("GET", "/broken", broken)
    with caplog.at_level(logging.ERROR, logger="bot.http"):
        async with server, httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.get("/broken")
    assert answer.status_code == 500
    assert "Traceback" not in answer.text and "KeyError" not in answer.text
    mine = [r for r in caplog.records if r.name == "bot.http"]
    assert len(mine) == 1
    assert mine[0].exc_info is None
    assert "GET /broken failed: KeyError" in mine[0].getMessage()
    assert "\n" not in mine[0].getMessage()


async def test_bodies_over_the_limits_are_refused() -> None:
    async def echo_small(request: web.Request) -> web.Response:
        return web.Response(body=await read_body(request, 10))

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    server = HttpServer(LOCAL, max_body_bytes=100)
    server.add_route("POST", "/small", echo_small)
    server.add_route("POST", "/echo", echo)
    async with server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/small", content=b"0123456789")).content == b"0123456789"
        assert (await client.post("/small", content=b"x" * 11)).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            for _ in range(3):
                yield b"x" * 5

        assert (await client.post("/small", content=chunks())).status_code == 413
        assert (await client.post("/echo", content=b"y" * 100)).status_code == 200
        assert (await client.post("/echo", content=b"y" * 101)).status_code == 413


def test_the_enabled_setting_defaults_off_and_reads_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().http.enabled is False
    monkeypatch.setenv("SOLOOPS_HTTP__ENABLED", "true")
    assert Settings().http.enabled is True


# --- health ---------------------------------------------------------------------------


def test_verdict_names_the_failing_parts() -> None:
    ok = PartState(True, "", T0)
    assert verdict({"database": ok})[0] == 200
    status, body = verdict({"database": ok, "slack": PartState(False, "token revoked", T0)})
    assert status == 503
    assert body["failing"] == ["slack"]
    assert body["parts"]["slack"] == {
        "ok": False,
        "detail": "token revoked",
        "since": "2025-03-01T08:00:00.000000Z",
    }
    assert verdict({}) == (200, {"status": "ok", "failing": [], "parts": {}})


async def test_healthz_is_200_then_503_naming_the_failing_part() -> None:
    clock = ManualClock(T0)
    health = Health(clock)
    health.report("database", True, "soloops.db")
    health.report("telegram", True, "polling")
    answers = {"scheduler": (True, "3 jobs")}

    async def scheduler() -> tuple[bool, str]:
        return answers["scheduler"]

    health.probe("scheduler", scheduler)
    server = HttpServer(LOCAL)
    add_health_routes(server, health)
    async with server, httpx.AsyncClient(base_url=server.url) as client:
        first = await client.get("/healthz")
        assert first.status_code == 200
        assert first.json()["status"] == "ok"
        assert sorted(first.json()["parts"]) == ["database", "scheduler", "telegram"]
        assert first.json()["parts"]["scheduler"]["detail"] == "3 jobs"

        clock.advance(minutes=5)
        health.report("telegram", False, "api.telegram.org unreachable")
        answers["scheduler"] = (False, "lagging 120 s")
        second = await client.get("/healthz")
        assert second.status_code == 503
        assert second.json()["failing"] == ["scheduler", "telegram"]
        assert second.json()["parts"]["telegram"]["since"] == "2025-03-01T08:05:00.000000Z"
        assert second.json()["parts"]["database"]["since"] == "2025-03-01T08:00:00.000000Z"

        health.report("telegram", True, "polling")
        answers["scheduler"] = (True, "3 jobs")
        assert (await client.get("/healthz")).status_code == 200
        # /metrics was not given: it does not exist
        assert (await client.get("/metrics")).status_code == 404


async def test_expected_parts_and_broken_probes_count_as_failing() -> None:
    health = Health(ManualClock(T0), probe_timeout_s=0.05)
    health.expect("database", "slack")
    health.report("database", True)

    async def broken() -> tuple[bool, str]:
        raise OSError("disk gone")

    async def hangs() -> tuple[bool, str]:
        never = asyncio.Event()
        await never.wait()  # the probe's timeout is what ends this
        return True, ""

    health.probe("model", broken)
    health.probe("scheduler", hangs)
    status, body = verdict(await health.check())
    assert status == 503
    assert body["failing"] == ["model", "scheduler", "slack"]
    assert body["parts"]["slack"]["detail"] == "has not reported yet"
    assert body["parts"]["model"]["detail"] == "probe failed (OSError)"
    assert "did not answer within 0.05s" in body["parts"]["scheduler"]["detail"]


async def test_metrics_passes_the_callables_bytes_through() -> None:
    text = b'# TYPE soloops_tasks gauge\nsoloops_tasks{state="done"} 3.0\n'

    async def metrics() -> bytes:
        return text

    server = HttpServer(LOCAL)
    add_health_routes(server, Health(), metrics)
    async with server, httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.get("/metrics")
        assert answer.status_code == 200
        assert answer.content == text
        assert answer.headers["content-type"] == METRICS_CONTENT_TYPE
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
