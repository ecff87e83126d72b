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

import httpx

from bot.runtime import open_runtime
from config import load_settings
from memory.approvals import ApprovalRow
from tests.harness.common import OPERATORS, NoModel, landed_at_sink, operate, send_workload

_CLIENT = re.compile(r"\bClient(\d+)\b")


def client_of(summary: str) -> int:
    """The client number a card is about."""
    found = _CLIENT.search(summary)
    assert found is not None, summary
    return int(found.group(1))


def invoice_text(n: int) -> str:
    return f"/invoice Client{n} {100 + n} EUR work {n} to c{n}@client.test vat 19%"


async def main(workload: int, status_url: str) -> None:
    settings = load_settings()
    async with (
        open_runtime(settings, [], operators=OPERATORS, embedder=NoModel()) as runtime,
        httpx.AsyncClient() as http,
    ):

        async def decide(card: ApprovalRow) -> str:
            if card.purpose == "action":
                return "reject" if client_of(card.summary) % 4 == 0 else "approve"
            if card.purpose == "reconcile":
                return await landed_at_sink(http, status_url, card, settings.email.from_address)
            return "approve"  # Retry a dead letter

        await send_workload(runtime, ((f"i{n}", "c", invoice_text(n)) for n in range(workload)))
        await operate(runtime, decide, workload=workload, kind="invoice")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
