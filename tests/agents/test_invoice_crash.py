"""Crash safety for invoices: soloops killed with SIGKILL while numbering invoices,
rendering their PDFs and emailing them (each kill once one or two more invoices reached
the SMTP sink), then restarted until the work is done.

At the end: one invoice per message, numbers 1..N with no gap and none twice, every
approved invoice emailed exactly once (counted by Message-ID at the SMTP sink), no
rejected one emailed, each invoice's state matching what happened.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from agents.invoice_pdf import pdf_sha256
from tests.emulators.smtp import SmtpSink
from tests.harness.common import (
    crash_env,
    kill_as_mail_lands,
    sink_env,
    sink_status,
    start_worker,
)

WORKER = "tests.harness.invoice_worker"
WORKLOAD = 20
KILLS = 6


@pytest.mark.slow
async def test_kills_while_invoicing_leave_no_gap_and_no_double_email(tmp_path: Path) -> None:
    async with SmtpSink() as sink, sink_status(sink) as status_url:
        settings = sink_env(sink, "Solo Studio <billing@solo.test>")
        env = crash_env(
            tmp_path / "home", settings | {"SOLOOPS_INVOICES__SELLER_NAME": "Solo Studio"}
        )
        args = (str(WORKLOAD), status_url)
        # One or two more invoices per life: 15 are approved, so the workload outlasts
        # the kills, and the other invoices are being numbered, rendered or sent.
        kills = await kill_as_mail_lands(
            sink, WORKER, args, env, kills=KILLS, most=2, seed=20261102
        )
        assert kills == KILLS, f"the workload ended after {kills} kills; make it longer"
        proc = await start_worker(WORKER, args, env)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert b"DONE" in out

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
