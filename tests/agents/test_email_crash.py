"""Crash safety for email: soloops killed with SIGKILL while sending approved emails,
then restarted until the work is done.

At the end every approved email reached the SMTP sink exactly once: no Message-ID
twice, none missing, each with its own recipient and subject. The kills land at
random points, and often right after the sink took a message (the window between
"sent" and "recorded as sent"), which the reconciliation must answer from the sink.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import IO
from urllib.parse import unquote

import pytest
from aiohttp import web

from connectors.email import message_id
from tests.emulators.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = 100
KILLS = 10
FROM = "Solo Studio <ops@solo.test>"


def _env(home: Path, sink: SmtpSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update(
        {
            "SOLOOPS_HOME": str(home),
            "SOLOOPS_EMAIL__HOST": "127.0.0.1",
            "SOLOOPS_EMAIL__PORT": str(sink.port),
            "SOLOOPS_EMAIL__SECURITY": "none",
            "SOLOOPS_EMAIL__FROM_ADDRESS": FROM,
            "SOLOOPS_ACTIONS__RETRY_BASE_S": "0.02",
            "SOLOOPS_ACTIONS__RETRY_MAX_S": "0.2",
            "SOLOOPS_ACTIONS__MAX_ATTEMPTS": "30",
            "SOLOOPS_BREAKER__THRESHOLD": "1000",
            "SOLOOPS_BUDGETS__DEFAULT__ACTIONS_PER_DAY": "100000",
        }
    )
    return env


async def _status_server(sink: SmtpSink) -> tuple[web.AppRunner, str]:
    """GET /m/<Message-ID>: 200 if the sink took a message with it, else 404."""

    async def status(request: web.Request) -> web.Response:
        wanted = unquote(request.match_info["mid"])
        landed = any(m.message_id == wanted for m in sink.messages)
        return web.Response(status=200 if landed else 404)

    app = web.Application()
    app.router.add_get("/m/{mid}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/m/"


async def _start(
    env: dict[str, str], status_url: str, log: IO[bytes]
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.harness.email_worker",
        str(WORKLOAD),
        status_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,  # a file, not a pipe: a full pipe would stall the worker
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if line.strip() != b"READY":
        await proc.wait()
        pytest.fail(f"the worker did not start: {line!r} (see {log.name})")
    return proc


async def _sent_or_exited(sink: SmtpSink, target: int, proc: asyncio.subprocess.Process) -> None:
    """Return once the sink holds ``target`` messages or the worker ended."""
    exited = asyncio.ensure_future(proc.wait())
    try:
        while len(sink.messages) < target and not exited.done():
            await asyncio.wait({exited}, timeout=0.005)  # a condition polled, not a timing
    finally:
        exited.cancel()


@pytest.mark.slow
async def test_kills_while_emailing_lose_none_and_send_none_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with SmtpSink() as sink:
        runner, status_url = await _status_server(sink)
        try:
            env = _env(home, sink)
            rng = random.Random(20261113)
            kills = 0
            with (tmp_path / "worker.log").open("wb") as log:
                while kills < KILLS:
                    proc = await _start(env, status_url, log)
                    # Kill after a few more emails landed (at most 8 per life, so the
                    # workload outlasts the kills), plus a random bit more.
                    target = len(sink.messages) + rng.randint(1, 8)
                    await asyncio.wait_for(_sent_or_exited(sink, target, proc), timeout=120)
                    await asyncio.sleep(rng.uniform(0, 0.05))
                    if proc.returncode is not None:
                        break
                    proc.kill()  # SIGKILL: no clean shutdown
                    kills += 1
                    await proc.wait()
                assert kills == KILLS, f"the workload ended after {kills} kills; make it longer"
                proc = await _start(env, status_url, log)
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
            assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
            assert b"DONE" in out
        finally:
            await runner.cleanup()

    with sqlite3.connect(home / "soloops.db") as db:
        task_states = dict(
            db.execute("SELECT state, COUNT(*) FROM tasks WHERE kind = 'mail' GROUP BY state")
        )
        action_keys = [
            row[0]
            for row in db.execute(
                "SELECT idempotency_key FROM actions"
                " WHERE connector = 'email' AND state = 'succeeded'"
            )
        ]
        [(interrupted,)] = db.execute(
            "SELECT COUNT(*) FROM events WHERE kind IN ('task.requeued', 'action.reconciled')"
        ).fetchall()

    assert task_states == {"succeeded": WORKLOAD}
    ids = Counter(m.message_id for m in sink.messages)
    twice = {mid: count for mid, count in ids.items() if count > 1}
    assert not twice, twice
    # None lost: one message per approved email, by subject and recipient.
    subjects = Counter(str(m.message["Subject"]) for m in sink.messages)
    assert subjects == Counter(f"Mail {n}" for n in range(WORKLOAD))
    for mail in sink.messages:
        n = int(str(mail.message["Subject"]).removeprefix("Mail "))
        assert mail.rcpt_tos == [f"r{n}@client.test"]
    # Each message carries the Message-ID derived from its action's key (what
    # reconciliation asks the receiving side about): one succeeded action per email.
    assert set(ids) == {message_id(key, FROM) for key in action_keys}
    assert len(action_keys) == WORKLOAD
    assert interrupted > 0  # the kills interrupted work that had to be picked up again
    print(f"\nemail crash: {kills} SIGKILLs, {interrupted} tasks requeued or actions reconciled")
