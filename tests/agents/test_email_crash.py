"""Crash safety for email: soloops killed with SIGKILL while sending approved emails,
then restarted until the work is done.

At the end every approved email reached the SMTP sink exactly once: no Message-ID
twice, none missing, each with its own recipient and subject. Each kill lands right
after the sink took a random 1 to 8 more messages (the window between "sent" and
"recorded as sent"), which the reconciliation must answer from the sink.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from connectors.email import message_id
from tests.emulators.smtp import SmtpSink
from tests.harness.common import (
    crash_env,
    kill_as_mail_lands,
    sink_env,
    sink_status,
    start_worker,
)

WORKER = "tests.harness.email_worker"
WORKLOAD = 100
KILLS = 10
FROM = "Solo Studio <ops@solo.test>"


@pytest.mark.slow
async def test_kills_while_emailing_lose_none_and_send_none_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with SmtpSink() as sink, sink_status(sink) as status_url:
        env = crash_env(home, sink_env(sink, FROM))
        args = (str(WORKLOAD), status_url)
        with (tmp_path / "worker.log").open("wb") as log:
            # At most 8 emails per life, so the workload outlasts the kills.
            kills = await kill_as_mail_lands(
                sink, WORKER, args, env, kills=KILLS, most=8, seed=20261113, log=log
            )
            assert kills == KILLS, f"the workload ended after {kills} kills; make it longer"
            proc = await start_worker(WORKER, args, env, log)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
        assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert b"DONE" in out

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
