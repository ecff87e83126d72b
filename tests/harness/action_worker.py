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

import httpx

from bot.runtime import open_runtime
from config import load_settings
from memory.approvals import ApprovalRow
from tests.harness.common import OPERATORS, NoModel, operate, reconcile_key, send_workload


def item_of(action: str) -> int:
    """The item number an action card is about."""
    params = json.loads(action)["params"]
    return int(params["payload"]["text"].removeprefix("item-"))


async def main(workload: int) -> None:
    settings = load_settings()
    status_url = settings.hooks["crm"].status_url or ""
    async with (
        open_runtime(settings, [], operators=OPERATORS, embedder=NoModel()) as runtime,
        httpx.AsyncClient() as http,
    ):

        async def decide(card: ApprovalRow) -> str:
            if card.purpose == "action":
                return "reject" if item_of(card.action) % 5 == 0 else "approve"
            if card.purpose == "reconcile":
                # The operator checks the other side before answering.
                answer = await http.get(status_url.replace("{key}", reconcile_key(card)))
                return "approve" if answer.status_code == 200 else "reject"
            return "approve"  # Retry a dead letter

        # One conversation: tasks run in order, so kills land mid-work.
        await send_workload(
            runtime, ((f"w{n}", "c", f"/hook crm item-{n}") for n in range(workload))
        )
        await operate(runtime, decide, workload=workload)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
