"""Retention: clear old delivered reply bodies, inbound message texts and the bodies of
tasks that ended well.

What a message leaves behind is mostly text nobody reads again: the reply's body in
the outbox, the message's text in the inbound log, and the task's intent (the parsed
command, which repeats the message) once the task succeeded or was cancelled. After
``days`` days they are cleared; the rows themselves (who, where, when, delivery state,
platform ids, task kind, agent and state) and the event log are kept forever, so the
hash chain and every audit question still hold. Failed, refused and dead tasks keep
their intent: a retry runs it again.

Runs at start and then every ``interval_s`` as a plain asyncio task (it could become
a scheduler job; it owns no state worth persisting: where the last run stopped is
kept in memory and found again by one walk after a restart).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from memory.clock import Clock, to_iso
from memory.events import EventLog
from memory.inbound import InboundRepo
from memory.outbox import OutboxRepo
from memory.store import Store
from memory.tasks import TaskRepo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention run cleared."""

    bodies: int = 0
    texts: int = 0
    tasks: int = 0


class Retention:
    """Clears what is older than the retention window, now and then every interval."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        clock: Clock,
        days: int,
        interval_s: float = 86_400.0,
    ) -> None:
        self._outbox = OutboxRepo(store)
        self._inbound = InboundRepo(store)
        self._tasks = TaskRepo(store)
        self._events = events
        self._clock = clock
        self._days = days
        self._interval_s = interval_s
        # Everything up to these ids is final: the next run starts after them.
        self._outbox_after = 0
        self._inbound_after = 0
        self._tasks_after = 0
        self._task: asyncio.Task[None] | None = None
        self._ran = asyncio.Event()
        self.runs = 0  # completed runs

    async def run_once(self) -> Pruned:
        """One pass: clear what is older than ``days`` days (nothing when days is 0)."""
        if self._days == 0:
            return Pruned()
        before = self._clock.now() - timedelta(days=self._days)
        bodies, self._outbox_after = await self._outbox.prune_delivered(
            before, after_id=self._outbox_after
        )
        texts, self._inbound_after = await self._inbound.prune_texts(
            before, after_id=self._inbound_after
        )
        tasks, self._tasks_after = await self._tasks.prune_finished(
            before, after_id=self._tasks_after
        )
        if bodies or texts or tasks:
            await self._events.record(
                "retention.pruned",
                actor="soloops",
                payload={
                    "days": self._days,
                    "before": to_iso(before),
                    "reply_bodies": bodies,
                    "inbound_texts": texts,
                    "task_bodies": tasks,
                },
            )
        self.runs += 1
        self._ran.set()
        return Pruned(bodies, texts, tasks)

    async def wait_runs(self, count: int) -> None:
        """Until ``count`` runs have completed (a test's or the bench's wait)."""
        while self.runs < count:
            self._ran.clear()
            await self._ran.wait()

    def start(self) -> None:
        """Run now in the background, then every interval, until :meth:`stop`."""
        if self._days and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention")

    async def stop(self) -> None:
        """Stop the background runs. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention failed; trying again in %.0f s", self._interval_s)
            await asyncio.sleep(self._interval_s)
