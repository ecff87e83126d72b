"""What comes in over HTTP survives SIGKILL: a real ``soloops run`` subprocess serving
HTTP is killed right after it answered, and restarted; the work runs once.

- An inbound hook: the 202 means stored (the message and its task), so the work runs
  after a restart even though the process died right after answering.
- Telegram webhook mode: the test plays Telegram (the emulator posts each update to
  the webhook and posts again whatever was not answered 200); >= 100 messages under
  >= 10 SIGKILLs, none lost, none processed twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from connectors.webhook import canonical_body, sign
from tests.emulators.telegram import JSON, TelegramEmulator

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec-inbound-0123456789"
WEBHOOK_SECRET = "tg-webhook-secret_0123"
OP = 4242
MESSAGES = 100
KILLS = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update({"SOLOOPS_HOME": str(home), **settings})
    return env


@asynccontextmanager
async def soloops_run(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``soloops run`` as a subprocess (stdin stays open: the console keeps running)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _until_serving(url: str, proc: asyncio.subprocess.Process) -> None:
    """Wait until the server answers (a refused connection means not yet listening)."""
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        while True:
            if proc.returncode is not None:
                assert proc.stderr is not None
                pytest.fail(f"soloops exited: {(await proc.stderr.read()).decode()[-2000:]}")
            try:
                async with http.get(f"{url}/healthz") as answer:
                    await answer.read()
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # the retry's pace only; nothing is asserted on time


async def _line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    """Read stdout until a line holds ``text``."""
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                pytest.fail(f"soloops ended before printing {text!r}")
            if text in line:
                return line


async def _say(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    await proc.stdin.drain()


@pytest.mark.slow
async def test_a_hook_answered_202_runs_after_the_process_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(
        home,
        SOLOOPS_HTTP__ENABLED="true",
        SOLOOPS_HTTP__PORT=str(port),
        SOLOOPS_INBOUND=json.dumps({"site": {"secret": SECRET, "intent": "remember"}}),
    )
    body = canonical_body({"text": "Acme asked for a quote"})
    async with soloops_run(env) as first:
        await _until_serving(url, first)
        # The notes agent is paused, so the kill surely lands before the work runs.
        await _say(first, "/pause notes")
        await _line_with(first, "notes")
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": "lead-1",
            "X-Soloops-Timestamp": str(stamp),
            "X-Soloops-Signature": sign(SECRET, stamp, "lead-1", body),
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/hooks/site", data=body, headers=headers) as answer:
                assert answer.status == 202
            first.kill()  # SIGKILL right after the 202
            async with asyncio.timeout(60):
                await first.wait()
    with sqlite3.connect(home / "soloops.db") as db:
        assert db.execute("SELECT COUNT(*) FROM inbound WHERE platform = 'hook:site'").fetchone()
        queued = db.execute(
            "SELECT state FROM tasks WHERE idempotency_key = 'hook:site:lead-1'"
        ).fetchall()
        assert [state for (state,) in queued] == ["queued"]
        assert db.execute("SELECT COUNT(*) FROM memories").fetchone() == (0,)
    async with soloops_run(env) as second:
        await _until_serving(url, second)
        async with (  # the sender retries: a duplicate
            aiohttp.ClientSession() as http,
            http.post(f"{url}/hooks/site", data=body, headers=headers) as answer,
        ):
            assert answer.status == 200
        await _say(second, "/resume notes")
        await _line_with(second, "Remembered #1.")
        assert second.stdin is not None
        second.stdin.close()  # the console's end of input: a clean stop
        async with asyncio.timeout(60):
            await second.wait()
    with sqlite3.connect(home / "soloops.db") as db:
        assert db.execute("SELECT text FROM memories").fetchall() == [("Acme asked for a quote",)]
        assert db.execute(
            "SELECT state FROM tasks WHERE idempotency_key = 'hook:site:lead-1'"
        ).fetchall() == [("succeeded",)]


@pytest.fixture
async def api() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def _post(api: TelegramEmulator, update: JSON) -> int:
    try:
        return await api.post_webhook(update, timeout_s=20)
    except (aiohttp.ClientError, TimeoutError):
        return 0  # no answer: Telegram delivers it again


@pytest.mark.slow
async def test_webhook_mode_loses_nothing_and_repeats_nothing_under_sigkill(
    tmp_path: Path, api: TelegramEmulator
) -> None:
    home = tmp_path / "home"
    port = _free_port()
    env = _env(
        home,
        SOLOOPS_TELEGRAM__TOKEN=api.token,
        SOLOOPS_TELEGRAM__BASE_URL=api.base_url,
        SOLOOPS_TELEGRAM__BASE_FILE_URL=api.base_file_url,
        SOLOOPS_TELEGRAM__OPERATORS=json.dumps([OP]),
        SOLOOPS_TELEGRAM__MODE="webhook",
        SOLOOPS_TELEGRAM__WEBHOOK_URL=f"http://127.0.0.1:{port}/telegram",
        SOLOOPS_TELEGRAM__WEBHOOK_SECRET=WEBHOOK_SECRET,
        SOLOOPS_HTTP__PORT=str(port),
    )
    rng = random.Random(20261121)
    updates: list[JSON] = []
    unanswered: list[JSON] = []
    kills = 0
    while kills < KILLS:
        async with soloops_run(env) as proc:
            webhooks = len(api.calls_of("setWebhook"))
            await api.wait_for(
                lambda n=webhooks, p=proc: (
                    len(api.calls_of("setWebhook")) > n  # type: ignore[misc]  # defaults bind the loop's values
                    or p.returncode is not None
                ),
                within_s=60,
                what="soloops to set its webhook",
            )
            assert proc.returncode is None, "soloops exited at start"
            while len(updates) < MESSAGES * (kills + 1) // KILLS:
                update = api.send_text(OP, f"/remember item-{len(updates)}")
                updates.append(update)
                unanswered.append(update)
            batch, unanswered = unanswered, []
            # Each round ends with a kill while the last updates are in flight (and the
            # work of the earlier ones is running).
            cut = len(batch) - rng.randint(1, 3)
            for update in batch[:cut]:
                if await _post(api, update) != 200:
                    unanswered.append(update)
            in_flight = [asyncio.ensure_future(_post(api, update)) for update in batch[cut:]]
            await asyncio.wait(in_flight, timeout=rng.uniform(0.0, 0.05))  # where it lands
            proc.kill()
            kills += 1
            await proc.wait()
            for update, posted in zip(batch[cut:], in_flight, strict=True):
                if await posted != 200:
                    unanswered.append(update)  # Telegram redelivers what was not answered
    assert len(updates) >= 100
    async with soloops_run(env) as proc:
        webhooks = len(api.calls_of("setWebhook"))
        await api.wait_for(lambda: len(api.calls_of("setWebhook")) > webhooks, within_s=60)
        for update in unanswered:
            assert await _post(api, update) == 200
        wanted = {u["message"]["message_id"] for u in updates}
        await api.wait_for(
            lambda: wanted <= {m.reply_to for m in api.sent(OP)},
            within_s=120,
            what="a reply to every message",
        )
        proc.terminate()
        async with asyncio.timeout(60):
            await proc.wait()

    with sqlite3.connect(home / "soloops.db") as db:
        inbound = db.execute("SELECT COUNT(*) FROM inbound WHERE platform = 'telegram'").fetchone()
        texts = [text for (text,) in db.execute("SELECT text FROM memories")]
        states = dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
        requeued = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'task.requeued'").fetchone()
    assert inbound == (len(updates),)
    assert sorted(texts) == sorted(
        f"item-{n}" for n in range(len(updates))
    )  # none lost, none twice
    assert states == {"succeeded": len(updates)}
    print(
        f"\ntelegram webhook: {len(updates)} messages, {kills} SIGKILLs, "
        f"{requeued[0]} tasks requeued after a kill"
    )
