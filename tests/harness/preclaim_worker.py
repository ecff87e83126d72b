"""A soloops process killed right as an inline command's commit lands, for crash tests.

Run as ``python -m tests.harness.preclaim_worker``: ``/help`` goes through the real
gateway with the outbox dispatcher running, so its reply is stored already claimed
(``sending``) in the message's own commit. A subscriber to that commit's news kills
the process with SIGKILL from inside the commit's callbacks: the reply is on disk,
claimed, and no sender was ever called (the console sender would print it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import load_settings
from memory.outbox import QUEUED_TOPIC
from tests.harness.inbound import console_inbound


def die(value: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    async with open_runtime(load_settings(), [ConsoleSender(sys.stdout)], mode="chat") as runtime:
        runtime.store.subscribe(QUEUED_TOPIC, die)
        await runtime.gateway.handle(console_inbound("/help", "preclaim-1"))
        await asyncio.Event().wait()  # not reached


if __name__ == "__main__":
    asyncio.run(main())
