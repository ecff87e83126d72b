"""A soloops process for the invoice crash test: a scripted workload of invoices.

``python -m tests.harness.invoice_worker N STATUS_URL`` sends ``/invoice Client<n> ...``
for n < N through the real gateway with stable message ids (after a restart the same
messages arrive again and are dropped as duplicates), then acts as the operator: it
approves every invoice card except those of clients divisible by 4, which it rejects;
on a "did this go through?" card it asks the SMTP sink (``STATUS_URL`` + Message-ID)
before answering. It prints READY once every message is in and DONE when every task
has a final state. The test kills it with SIGKILL at random points (while numbering,
rendering PDFs and sending) and starts it again.
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from bot.inbound import Inbound
from bot.runtime import open_runtime
from config import load_settings
from connectors.email import message_id
from tests.harness.action_worker import FINAL, NoModel

_CLIENT = re.compile(r"\bClient(\d+)\b")


def client_of(summary: str) -> int:
    """The client number a card is about."""
    found = _CLIENT.search(summary)
    assert found is not None, summary
    return int(found.group(1))


async def main(workload: int, status_url: str) -> None:
    settings = load_settings()
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
                    message_id=f"i{n}",
                    chat_id="c",
                    user_id="op",
                    text=f"/invoice Client{n} {100 + n} EUR work {n} to c{n}@client.test vat 19%",
                    received_at=datetime.now(UTC),
                )
            )
        print("READY", flush=True)
        while True:
            for card in await desk.repo.pending():
                if card.purpose == "action":
                    decision = "reject" if client_of(card.summary) % 4 == 0 else "approve"
                elif card.purpose == "reconcile":
                    key = card.summary.rsplit("key ", 1)[1].rstrip(".")
                    sent = message_id(key, settings.email.from_address)
                    answer = await http.get(status_url + quote(sent, safe=""))
                    decision = "approve" if answer.status_code == 200 else "reject"
                else:
                    decision = "approve"  # Retry a dead letter
                await desk.decide_by_code(card.code, decision, "harness:op")
            runtime.coordinator.wake()
            open_tasks = await runtime.store.scalar(
                f"SELECT COUNT(*) FROM tasks WHERE state NOT IN {FINAL} AND kind = 'invoice'"
            )
            stored = await runtime.store.scalar("SELECT COUNT(*) FROM tasks WHERE kind = 'invoice'")
            if stored == workload and open_tasks == 0:
                print("DONE", flush=True)
                return
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
