"""Crash safety: 200 actions, soloops killed with SIGKILL at random points, restarted.

At the end: every intent has a final state; no action reached the provider twice for
one key; every action the operator approved happened; nothing ran without approval.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path

import pytest

from tests.emulators.provider import Provider
from tests.harness.common import crash_env, start_worker

WORKER = "tests.harness.action_worker"
WORKLOAD = 200
KILLS = 20


def _env(home: Path, provider: Provider) -> dict[str, str]:
    hook = {"url": provider.hook_url, "secret": provider.secret, "status_url": provider.status_url}
    return crash_env(home, {"SOLOOPS_HOOKS": json.dumps({"crm": hook})})


@pytest.mark.slow
async def test_random_kills_lose_nothing_and_repeat_nothing(
    tmp_path: Path, provider: Provider
) -> None:
    provider.fail_rate = 0.15  # 503s on the way in: retries are part of the workload
    provider.answer_delay_s = 0.08  # kills land between "it landed" and "we know it landed"
    env = _env(tmp_path / "home", provider)
    rng = random.Random(20261121)
    kills = 0
    mid_work = 0
    while kills < KILLS:
        proc = await start_worker(WORKER, (str(WORKLOAD),), env)
        await asyncio.sleep(rng.uniform(0.02, 0.4))
        if proc.returncode is not None:
            break  # the work finished before this kill: stop (the count below fails)
        before = len(provider.processed)
        proc.kill()  # SIGKILL: no clean shutdown, no flush, nothing
        kills += 1
        mid_work += before < WORKLOAD * 4 // 5
        await proc.wait()
    assert kills == KILLS, f"the workload ended after {kills} kills; make it longer"
    proc = await start_worker(WORKER, (str(WORKLOAD),), env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert b"DONE" in out
    assert mid_work >= KILLS // 2, "most kills should land while work is under way"

    with sqlite3.connect(tmp_path / "home" / "soloops.db") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
        actions = db.execute(
            "SELECT a.idempotency_key, a.state, a.params, p.state FROM actions a"
            " JOIN approvals p ON p.task_id = a.task_id AND p.purpose = 'action'"
        ).fetchall()
        requeued = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'task.requeued'").fetchone()
        reconciled = db.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'action.reconciled'"
        ).fetchone()

    # Every intent has a final state.
    assert sum(states.values()) == WORKLOAD
    assert set(states) <= {"succeeded", "failed", "cancelled"}
    # No action reached the provider twice for one key (as a processed request).
    assert provider.duplicates() == []
    assert all(count == 1 for count in provider.process_counts.values())
    assert len(actions) == WORKLOAD
    by_key = {
        key: (state, json.loads(params), approval) for key, state, params, approval in actions
    }
    for key, (state, params, approval) in by_key.items():
        item = int(params["payload"]["text"].removeprefix("item-"))
        if item % 5 == 0:
            # Rejected by the operator: never ran.
            assert approval == "rejected", key
            assert state == "rejected", key
            assert key not in provider.processed, key
        else:
            # Approved: happened exactly once, and only with its approval.
            assert approval == "approved", key
            assert state == "succeeded", key
            assert provider.process_counts[key] == 1, key
    assert set(provider.processed) <= set(by_key)
    assert len(provider.processed) == WORKLOAD - WORKLOAD // 5
    # The kills really interrupted work that had to be picked up again.
    assert requeued[0] > 0
    assert reconciled[0] > 0
    print(
        f"\ncrash-safety: {kills} SIGKILLs ({mid_work} mid-work), {requeued[0]} tasks requeued,"
        f" {reconciled[0]} in-flight actions reconciled, {len(provider.requests)} requests,"
        f" {len(provider.processed)} processed once each"
    )
