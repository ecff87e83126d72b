"""A soloops process for the crash-safety test: a scripted workload of hook actions.

``python -m tests.harness.action_worker N`` sends ``/hook crm item-<n>`` for n < N
through the real gateway with stable message ids (after a restart the same messages
arrive again, as a platform redelivers them, and are dropped as duplicates), then acts
as the operator: it approves every action card except those of items divisible by 5,
which it rejects, and presses Retry on dead letters. It prints READY once every message is in and
DONE when every task has a final state, then exits. The test kills it with SIGKILL at
random points and starts it again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import numpy as np

from bot.inbound import Inbound
from bot.runtime import open_runtime
from config import load_settings
from memory.errors import EmbedderUnavailable

FINAL = ("succeeded", "failed", "cancelled")


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


def item_of(action: str) -> int:
    """The item number an action card is about."""
    params = json.loads(action)["params"]
    return int(params["payload"]["text"].removeprefix("item-"))


async def main(workload: int) -> None:
    settings = load_settings()
    status_url = settings.hooks["crm"].status_url or ""
    operators = {"harness": frozenset({"op"})}
    async with (
        open_runtime(settings, [], operators=operators, embedder=NoModel()) as runtime,
        httpx.AsyncClient() as http,
    ):
        desk = runtime.coordinator.approvals
        for n in range(workload):
            await runtime.gateway.handle(
                Inbound(
                    platform="harness",
                    message_id=f"w{n}",
                    chat_id="c",  # one conversation: tasks run in order, so kills land mid-work
                    user_id="op",
                    text=f"/hook crm item-{n}",
                    received_at=datetime.now(UTC),
                )
            )
        print("READY", flush=True)  # every message is in: from here on, it is all work
        while True:
            for card in await desk.repo.pending():
                if card.purpose == "action":
                    decision = "reject" if item_of(card.action) % 5 == 0 else "approve"
                elif card.purpose == "dead_letter":
                    decision = "approve"  # Retry
                elif card.purpose == "reconcile":
                    # The operator checks the other side before answering.
                    key = card.summary.rsplit("key ", 1)[1].rstrip(".")
                    answer = await http.get(status_url.replace("{key}", key))
                    decision = "approve" if answer.status_code == 200 else "reject"
                else:
                    decision = "approve"
                await desk.decide_by_code(card.code, decision, "harness:op")
            runtime.coordinator.wake()
            open_tasks = await runtime.store.scalar(
                f"SELECT COUNT(*) FROM tasks WHERE state NOT IN {FINAL}"
            )
            stored = await runtime.store.scalar("SELECT COUNT(*) FROM tasks")
            if stored == workload and open_tasks == 0:
                print("DONE", flush=True)
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
