"""A soloops process whose notes agent stops mid-task, for crash tests.

Run as ``python -m tests.harness.blocking_worker MARKER TEXT``: it sends
``/remember TEXT`` through the real gateway; the notes agent writes MARKER once the
task is running, then hangs until the test kills this process with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from agents import notes, ops
from agents.base import TaskContext
from agents.intents import Intent
from agents.notes import NotesAgent
from agents.ports import Ports
from agents.replies import Reply
from bot.runtime import open_runtime
from config import load_settings
from tests.harness.inbound import console_inbound
from tests.harness.marker import write_marker


async def main(marker: Path, text: str) -> None:
    class HangingNotes(NotesAgent):
        async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
            write_marker(marker, str(ctx.task_id))
            await asyncio.Event().wait()  # until SIGKILL
            return []

    def build(ports: Ports) -> NotesAgent:
        return HangingNotes(ports.memory(notes.NAMESPACE))

    hanging = replace(notes.FEATURE, build=build)
    features = [ops.FEATURE, hanging]
    async with open_runtime(
        load_settings(), [], features=features, default_features=False
    ) as runtime:
        await runtime.gateway.handle(console_inbound(f"/remember {text}", "crash-1"))
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
