"""What the crash harnesses share: the worker's side (a model that never loads, the
scripted messages, the operator loop) and the test's side (the environment, starting a
worker until it says READY, the SMTP sink's "did this Message-ID land?" endpoint).

A harness worker is a real soloops runtime in a subprocess. It sends its workload
through the real gateway with stable message ids (after a restart the same messages
arrive again, as a platform redelivers them, and are dropped as duplicates), prints
READY, then acts as the operator until every task has a final state and prints DONE.
The test kills it with SIGKILL at random points and starts it again.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

import httpx
import numpy as np
import pytest
from aiohttp import web

from bot.inbound import Inbound
from bot.runtime import Runtime
from connectors.email import message_id
from memory.approvals import ApprovalRow
from memory.errors import EmbedderUnavailable
from tests.emulators.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "cancelled")
OPERATORS = {"harness": frozenset({"op"})}


class NoModel:
    """An embedder that never loads: memory is not under test here, and loading torch
    in each of dozens of restarts would only slow the test down."""

    model_id = "none"
    dim = 384
    is_ready = False

    def start(self) -> None:
        return None

    async def ready(self) -> None:
        raise EmbedderUnavailable("no model in the crash harness")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbedderUnavailable("no model in the crash harness")


# The worker's side.


async def send_workload(runtime: Runtime, messages: Iterable[tuple[str, str, str]]) -> None:
    """Send ``(message_id, chat_id, text)`` through the gateway as the operator, then
    say READY: from here on, it is all work."""
    for mid, chat, text in messages:
        await runtime.gateway.handle(
            Inbound(
                platform="harness",
                message_id=mid,
                chat_id=chat,
                user_id="op",
                text=text,
                received_at=datetime.now(UTC),
            )
        )
    print("READY", flush=True)


def reconcile_key(card: ApprovalRow) -> str:
    """The idempotency key a "did this go through?" card asks about."""
    return card.summary.rsplit("key ", 1)[1].rstrip(".")


async def landed_at_sink(
    http: httpx.AsyncClient, status_url: str, card: ApprovalRow, from_address: str
) -> str:
    """Answer a reconcile card by asking the SMTP sink whether the email with the key's
    Message-ID landed: "approve" (mark done) if it did, else "reject" (retry)."""
    sent = message_id(reconcile_key(card), from_address)
    answer = await http.get(status_url + quote(sent, safe=""))
    return "approve" if answer.status_code == 200 else "reject"


async def operate(
    runtime: Runtime,
    decide: Callable[[ApprovalRow], Awaitable[str]],
    *,
    workload: int,
    kind: str | None = None,
    pause_s: float = 0.05,
) -> None:
    """Be the operator: answer every pending card with ``decide``'s "approve" or
    "reject" until ``workload`` tasks (of ``kind``, when given) are stored and final;
    then say DONE."""
    desk = runtime.coordinator.approvals
    of_kind = "" if kind is None else f" AND kind = '{kind}'"
    while True:
        for card in await desk.repo.pending():
            await desk.decide_by_code(card.code, await decide(card), "harness:op")
        runtime.coordinator.wake()
        open_tasks = await runtime.store.scalar(
            f"SELECT COUNT(*) FROM tasks WHERE state NOT IN {FINAL}{of_kind}"
        )
        stored = await runtime.store.scalar(f"SELECT COUNT(*) FROM tasks WHERE 1 = 1{of_kind}")
        if stored == workload and open_tasks == 0:
            print("DONE", flush=True)
            return
        await asyncio.sleep(pause_s)  # paces the operator's polling; nothing asserts on it


# The test's side.


def crash_env(home: Path, settings: dict[str, str]) -> dict[str, str]:
    """The worker's environment: this one without SOLOOPS_ settings, then the home,
    quick retries, no breaker and no budget in the way, and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update(
        {
            "SOLOOPS_HOME": str(home),
            "SOLOOPS_ACTIONS__RETRY_BASE_S": "0.02",
            "SOLOOPS_ACTIONS__RETRY_MAX_S": "0.2",
            "SOLOOPS_ACTIONS__MAX_ATTEMPTS": "30",
            "SOLOOPS_BREAKER__THRESHOLD": "1000",
            "SOLOOPS_BUDGETS__DEFAULT__ACTIONS_PER_DAY": "100000",
            **settings,
        }
    )
    return env


def sink_env(sink: SmtpSink, from_address: str) -> dict[str, str]:
    """Settings for sending email to the SMTP sink on loopback."""
    return {
        "SOLOOPS_EMAIL__HOST": "127.0.0.1",
        "SOLOOPS_EMAIL__PORT": str(sink.port),
        "SOLOOPS_EMAIL__SECURITY": "none",
        "SOLOOPS_EMAIL__FROM_ADDRESS": from_address,
    }


async def start_worker(
    module: str, args: Sequence[str], env: dict[str, str], log: IO[bytes] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m module args`` and return once it said READY. Its stderr goes
    to ``log`` (a file: a full pipe would stall the worker) or to a pipe read on failure.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log if log is not None else asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if line.strip() != b"READY":
        _, err = await proc.communicate()
        where = f"see {log.name}" if log is not None else (err or b"").decode()[-2000:]
        pytest.fail(f"the worker did not start: {line!r} ({where})")
    return proc


@asynccontextmanager
async def sink_status(sink: SmtpSink) -> AsyncIterator[str]:
    """Serve GET <url><Message-ID>: 200 if the sink took a message with it, else 404;
    yields the URL prefix."""

    async def status(request: web.Request) -> web.Response:
        wanted = unquote(request.match_info["mid"])
        landed = any(m.message_id == wanted for m in sink.messages)
        return web.Response(status=200 if landed else 404)

    app = web.Application()
    app.router.add_get("/m/{mid}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}/m/"
    finally:
        await runner.cleanup()


async def sent_or_exited(sink: SmtpSink, target: int, proc: asyncio.subprocess.Process) -> None:
    """Return once the sink holds ``target`` messages or the worker ended."""
    exited = asyncio.ensure_future(proc.wait())
    try:
        while len(sink.messages) < target and not exited.done():
            await asyncio.wait({exited}, timeout=0.005)  # a condition polled, not a timing
    finally:
        exited.cancel()


async def kill_as_mail_lands(
    sink: SmtpSink,
    module: str,
    args: Sequence[str],
    env: dict[str, str],
    *,
    kills: int,
    most: int,
    seed: int,
    log: IO[bytes] | None = None,
) -> int:
    """Start the worker and SIGKILL it once 1 to ``most`` more messages (drawn from
    ``seed``) reached ``sink``, ``kills`` times or until its workload ends first; return
    the kills made. A kill right after a message landed falls between "sent" and
    "recorded as sent", while the worker's other work is being prepared or sent; a
    kill on a timer alone could land before any work on a slow machine."""
    rng = random.Random(seed)
    made = 0
    while made < kills:
        proc = await start_worker(module, args, env, log)
        target = len(sink.messages) + rng.randint(1, most)
        await asyncio.wait_for(sent_or_exited(sink, target, proc), timeout=120)
        if proc.returncode is not None:
            break
        proc.kill()  # SIGKILL: no clean shutdown
        made += 1
        await proc.wait()
    return made
