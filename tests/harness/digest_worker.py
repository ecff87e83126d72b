"""A soloops process killed while it delivers the digest, for crash tests.

Run as ``python -m tests.harness.digest_worker MARKER``: it sends ``/digest`` through
the real gateway; the digest is composed and queued in the outbox as usual, and the
console sender, handed the digest (the reply with the chart), waits until its claim of
the row is committed (the outbox does not wait for that commit before sending), writes
MARKER with its outbox id and hangs before printing anything, until the test kills
this process: the kill always lands on a row that is claimed and being sent.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.outbox import Delivery
from bot.runtime import open_runtime
from config import load_settings
from memory.store import Store
from tests.harness.inbound import console_inbound
from tests.harness.marker import write_marker


class StuckConsole:
    """The console's sender that never finishes delivering a reply with a file."""

    platform = "console"

    def __init__(self, marker: Path) -> None:
        self._marker = marker
        self.store: Store | None = None

    async def send(self, delivery: Delivery) -> str | None:
        if delivery.reply.attachments:
            assert self.store is not None
            # A read through the store first commits the writes that finished: the
            # claim, which the outbox does not wait for before it sends, is then on disk.
            state = await self.store.scalar(
                "SELECT state FROM outbox WHERE id = ?", (delivery.row.id,)
            )
            assert state == "sending", state
            write_marker(self._marker, str(delivery.row.id))
            await asyncio.Event().wait()  # until SIGKILL
        return str(delivery.row.id)


async def main(marker: Path) -> None:
    console = StuckConsole(marker)
    async with open_runtime(load_settings(), [console]) as runtime:
        console.store = runtime.store
        await runtime.gateway.handle(console_inbound("/digest", "digest-1"))
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
