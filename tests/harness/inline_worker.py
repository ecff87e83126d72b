"""A soloops process that dies while sending an inline command's reply, for crash tests.

Run as ``python -m tests.harness.inline_worker MARKER``: it sends ``/help`` through the
real gateway (answered inside the message's own commit), and its console sender writes
MARKER with the outbox id when the reply reaches it, then hangs until the test kills
this process with SIGKILL: the reply is stored and claimed, and was never delivered.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.outbox import Delivery
from bot.runtime import open_runtime
from config import load_settings
from tests.harness.inbound import console_inbound
from tests.harness.marker import write_marker


class HangingConsole:
    """A console sender that never finishes a send."""

    platform = "console"

    def __init__(self, marker: Path) -> None:
        self._marker = marker

    async def send(self, delivery: Delivery) -> str | None:
        write_marker(self._marker, str(delivery.row.id))
        await asyncio.Event().wait()  # until SIGKILL
        return None


async def main(marker: Path) -> None:
    async with open_runtime(load_settings(), [HangingConsole(marker)], mode="chat") as runtime:
        await runtime.gateway.handle(console_inbound("/help", "inline-1"))
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
