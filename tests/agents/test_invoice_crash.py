"""Crash safety for invoices: soloops killed with SIGKILL while numbering invoices,
rendering their PDFs and emailing them, then restarted until the work is done.

At the end: one invoice per message, numbers 1..N with no gap and none twice, every
approved invoice emailed exactly once (counted by Message-ID at the SMTP sink), no
rejected one emailed, each invoice's state matching what happened.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp import web

from agents.invoice_pdf import pdf_sha256
from tests.emulators.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = 20
KILLS = 6


def _env(home: Path, sink: SmtpSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLOOPS_")}
    env.update(
        {
            "SOLOOPS_HOME": str(home),
            "SOLOOPS_EMAIL__HOST": "127.0.0.1",
            "SOLOOPS_EMAIL__PORT": str(sink.port),
            "SOLOOPS_EMAIL__SECURITY": "none",
            "SOLOOPS_EMAIL__FROM_ADDRESS": "Solo Studio <billing@solo.test>",
            "SOLOOPS_INVOICES__SELLER_NAME": "Solo Studio",
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


async def _start(env: dict[str, str], status_url: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.harness.invoice_worker",
        str(WORKLOAD),
        status_url,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if line.strip() != b"READY":
        _, err = await proc.communicate()
        pytest.fail(f"the worker did not start: {line!r} {err.decode()[-2000:]}")
    return proc


@pytest.mark.slow
async def test_kills_while_invoicing_leave_no_gap_and_no_double_email(tmp_path: Path) -> None:
    async with SmtpSink() as sink:
        runner, status_url = await _status_server(sink)
        try:
            env = _env(tmp_path / "home", sink)
            rng = random.Random(20261102)
            kills = 0
            while kills < KILLS:
                proc = await _start(env, status_url)
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                if proc.returncode is not None:
                    break
                proc.kill()  # SIGKILL: no clean shutdown
                kills += 1
                await proc.wait()
            assert kills == KILLS, f"the workload ended after {kills} kills; make it longer"
            proc = await _start(env, status_url)
            out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
            assert proc.returncode == 0, err.decode()[-3000:]
            assert b"DONE" in out
        finally:
            await runner.cleanup()

    with sqlite3.connect(tmp_path / "home" / "soloops.db") as db:
        invoices = db.execute(
            "SELECT seq, number, client, state, idempotency_key, pdf_sha256 FROM invoices"
            " ORDER BY seq"
        ).fetchall()
        [(last,)] = db.execute("SELECT last FROM invoice_counters").fetchall()
        task_states = dict(
            db.execute(
                "SELECT state, COUNT(*) FROM tasks WHERE kind = 'invoice' GROUP BY state"
            ).fetchall()
        )
        rendered = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'invoice.proposed'")
        [(requeued,)] = db.execute(
            "SELECT COUNT(*) FROM events WHERE kind IN ('task.requeued', 'action.reconciled')"
        ).fetchall()

    # One invoice per message, numbered 1..N: no gap, none twice, the counter agrees.
    assert [row[0] for row in invoices] == list(range(1, WORKLOAD + 1))
    assert last == WORKLOAD
    assert len({row[4] for row in invoices}) == WORKLOAD
    assert sorted(row[2] for row in invoices) == sorted(f"Client{n}" for n in range(WORKLOAD))
    assert task_states == {"succeeded": WORKLOAD}
    assert rendered.fetchone()[0] == WORKLOAD  # each proposed (PDF bound) once

    # Emailed exactly once each (by Message-ID and by invoice), rejected ones never.
    ids = Counter(m.message_id for m in sink.messages)
    assert all(count == 1 for count in ids.values()), ids
    subjects = Counter(str(m.message["Subject"]) for m in sink.messages)
    for _, number, client, state, _, sha in invoices:
        n = int(client.removeprefix("Client"))
        subject = f"Invoice {number} from Solo Studio"
        if n % 4 == 0:
            assert state == "void" and subjects[subject] == 0, number
        else:
            assert state == "sent" and subjects[subject] == 1, (number, subjects)
            [mail] = [m for m in sink.messages if m.message["Subject"] == subject]
            assert mail.rcpt_tos == [f"c{n}@client.test"]
            [pdf] = list(mail.message.iter_attachments())
            assert pdf_sha256(pdf.get_content()) == sha  # the PDF the approval bound
    assert len(sink.messages) == WORKLOAD - WORKLOAD // 4
    assert requeued > 0  # the kills interrupted work that had to be picked up again
    print(f"\ninvoice crash: {kills} SIGKILLs, {requeued} tasks requeued or actions reconciled")
