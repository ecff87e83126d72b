"""Delivers stored replies to their platforms, with retries.

Agents and the gateway write replies into the ``outbox`` table inside their own
transactions; this dispatcher reads due rows and hands each to the platform's
:class:`Sender`. A sender raises :class:`DeliveryError` saying whether a failure is
worth retrying. Pending rows survive restarts, so a crash or an outage loses no reply.

The dispatcher does not poll: it keeps the ids of pending replies in memory, learnt
from the commits that queue them (``outbox.queued``) and from its own retry schedule,
and reads the table only at start, after a failure of its own loop, when drained,
and every ``IDLE_POLL_S`` when idle (replies queued by another process). SQLite stays
the truth: a claim still checks the row's state.

Each row is claimed (``pending -> sending`` in a write transaction) before it is sent
and marked sent only from ``sending``, so however the reads interleave under load a
reply goes out once. Rows a crash left ``sending`` are returned to ``pending`` at the
next start: after a crash, a reply may arrive twice (at-least-once).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast

from agents.backoff import Backoff
from agents.replies import Reply
from memory.clock import Clock, SystemClock
from memory.events import EventLog
from memory.outbox import QUEUED_TOPIC, DeliveryState, OutboxRepo, OutboxRow
from memory.store import Store
from memory.waiting import wait_for_event

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
# Replies retry from 1 s up to 5 minutes (the shared schedule, agents/backoff.py).
BACKOFF = Backoff(base_s=1.0, cap_s=300.0)
IDLE_POLL_S = 30.0


class DeliveryError(Exception):
    """A platform did not take a reply.

    ``permanent`` means retrying cannot help (e.g. the chat does not exist);
    ``retry_after`` is the platform's own wait, when it gave one.
    """

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Delivery:
    """One reply to put into a chat.

    ``replaces_ref`` is the platform's id of an earlier message this one edits (a card
    after its decision); None means send a new message. A sender that splits a reply
    into pieces skips the first ``row.pieces_sent`` (delivered by an earlier attempt)
    and awaits ``progress(pieces, ref)`` after each piece, which stores the count.
    """

    row: OutboxRow
    reply: Reply
    replaces_ref: str | None = None
    progress: Callable[[int, str | None], Awaitable[None]] | None = None


class Sender(Protocol):
    """Something that puts a reply into a platform's chat."""

    platform: str

    async def send(self, delivery: Delivery) -> str | None:
        """Deliver; return the platform's id of the message (for later edits), if any."""
        ...


class OutboxDispatcher:
    """One loop that drains the outbox for the platforms it has senders for."""

    def __init__(
        self,
        store: Store,
        events: EventLog,
        senders: Mapping[str, Sender],
        *,
        clock: Clock | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self._store = store
        self._events = events
        self._senders = dict(senders)
        self._repo = OutboxRepo(store)
        self._clock = clock or SystemClock()
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready: deque[int] = deque()  # ids due now, in the order they were queued
        self._known: set[int] = set()  # ids in _ready or _later
        self._later: list[tuple[datetime, int]] = []  # retries this dispatcher scheduled
        self._scan = True  # read the table on the next round
        # Rows seen queued in this process, not yet delivered: (row, reply) by id.
        self._fresh: dict[int, tuple[OutboxRow, Reply | None]] = {}
        # The store's data_version at the last scan: while it holds, every reply queued
        # since was published to this dispatcher, so drain() needs no scan.
        self._scanned_version: int | None = None

    def _queued(self, value: object) -> None:
        # Published by OutboxRepo.enqueue on commit.
        outbox_id, platform, row, decoded = cast(tuple[int, str, OutboxRow, object], value)
        if platform in self._senders and outbox_id not in self._known:
            self._known.add(outbox_id)
            self._ready.append(outbox_id)
            # Its first delivery needs no read: the row as stored, and its reply.
            self._fresh[outbox_id] = (row, decoded if isinstance(decoded, Reply) else None)
            self.wake()

    def add_sender(self, sender: Sender) -> None:
        """Deliver replies for ``sender.platform`` from now on."""
        self._senders[sender.platform] = sender
        if self._task is not None:
            self._repo.serve(frozenset(self._senders))
        self._scan = True
        self.wake()

    def wake(self) -> None:
        """There may be new replies to deliver."""
        self._idle.clear()
        self._wakeup.set()

    async def start(self) -> None:
        """Start delivering (including replies left pending by an earlier run)."""
        # What an earlier start knew is stale (its claims are reclaimed below): the scan
        # finds every pending reply again.
        self._ready.clear()
        self._known.clear()
        self._fresh.clear()
        self._later.clear()
        self._store.subscribe(QUEUED_TOPIC, self._queued)
        async with self._store.write() as tx:
            reclaimed = await self._repo.reclaim(tx)
            if reclaimed:
                await self._events.append(
                    tx,
                    "reply.reclaimed",
                    actor="outbox",
                    payload={"count": reclaimed},
                )
        if reclaimed:
            log.warning(
                "%d replies were being sent when soloops last stopped; sending them again"
                " (a chat may see one of them twice)",
                reclaimed,
            )
        self._scan = True  # replies queued while it was stopped were not published to it
        self._task = asyncio.create_task(self._loop(), name="outbox")
        # From here a reply for these platforms may be queued already claimed for us.
        self._repo.serve(frozenset(self._senders))
        self.wake()

    async def stop(self) -> None:
        """Stop delivering; undelivered replies stay pending for the next start (a
        reply claimed for it and not sent yet is reclaimed then)."""
        self._repo.serve(frozenset())
        self._store.unsubscribe(QUEUED_TOPIC, self._queued)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def drain(self) -> None:
        """Return once every reply that is due now has been handled."""
        if not self._complete():
            self._scan = True  # replies may be due that this process was not told of
        elif self._idle.is_set() and not self._wakeup.is_set() and not self._ready:
            return
        self.wake()
        await self._idle.wait()

    def _complete(self) -> bool:
        """Whether the ids in memory are every reply due now: no retry due, and no
        commit by another connection since the last scan (replies queued in this
        process reach :meth:`_queued`)."""
        if self._task is None or self._scanned_version is None:
            return False
        # First: it commits finished writes, whose news may change what is below.
        unchanged = self._store.data_version() == self._scanned_version
        return unchanged and not self._scan and not self._later_due()

    def _retry_at(self, when: datetime, outbox_id: int) -> None:
        self._known.add(outbox_id)
        heapq.heappush(self._later, (when, outbox_id))

    async def _loop(self) -> None:
        while True:
            self._wakeup.clear()
            # Busy until this round ends, however it began (a wake, a retry coming due,
            # the idle poll): drain() may trust an idle that is set.
            self._idle.clear()
            try:
                await self._deliver_due()
            except Exception:
                log.exception("outbox delivery loop failed; retrying in 1 s")
                self._scan = True
                await asyncio.sleep(1.0)
                continue
            if self._wakeup.is_set():
                continue
            self._idle.set()
            timeout = IDLE_POLL_S
            if self._later:
                timeout = max(
                    0.0, min(timeout, (self._later[0][0] - self._clock.now()).total_seconds())
                )
            await wait_for_event(self._wakeup, timeout)
            if not self._wakeup.is_set() and not self._later_due():
                self._scan = True  # idle for a while: look for replies queued elsewhere

    def _later_due(self) -> bool:
        return bool(self._later) and self._later[0][0] <= self._clock.now()

    async def _deliver_due(self) -> None:
        if self._scan:
            self._scan = False
            self._scanned_version = self._store.data_version()
            # The scan also finds rows another process queued and retries of earlier runs.
            self._later.clear()
            self._known = set(self._ready)
            self._fresh = {i: fresh for i, fresh in self._fresh.items() if i in self._known}
            for row in await self._repo.due(list(self._senders), self._clock.now(), limit=1000):
                if row.id not in self._known:
                    self._known.add(row.id)
                    self._ready.append(row.id)
            next_at = await self._repo.next_due_at(list(self._senders))
            if next_at is not None and next_at > self._clock.now():
                heapq.heappush(self._later, (next_at, 0))  # a wake-up to scan again
        while self._later_due():
            _, outbox_id = heapq.heappop(self._later)
            if outbox_id == 0:
                self._scan = True
                self.wake()
            elif outbox_id not in self._ready:
                self._ready.append(outbox_id)
        while self._ready:
            outbox_id = self._ready.popleft()
            self._known.discard(outbox_id)
            await self._deliver(outbox_id)

    async def _deliver(self, outbox_id: int) -> None:
        subject = f"reply:{outbox_id}"
        target: OutboxRow | None = None
        known, reply = self._fresh.pop(outbox_id, (None, None))
        claimed: OutboxRow | None
        if known is not None and known.state is DeliveryState.SENDING:
            # Claimed for this dispatcher in the commit that queued it (it edits nothing).
            claimed = known
        else:
            # Not waited for (the commit follows within this turn of the loop): a claim
            # lost in a crash leaves the reply pending, sent again at the next start,
            # which is what a reclaimed 'sending' row gets too; in this process the
            # claim holds.
            async with self._store.write(durable=False) as tx:
                claimed = await self._repo.claim(tx, outbox_id, self._clock.now(), known)
                if claimed is not None and claimed.replaces_outbox_id is not None:
                    target = await self._repo.state_in(tx, claimed.replaces_outbox_id)
        if claimed is None:
            return  # already taken or handled, or not due yet
        row = claimed
        sender = self._senders[row.platform]
        try:
            replaces_ref = None
            if row.replaces_outbox_id is not None:
                if target is not None and target.state in (
                    DeliveryState.PENDING,
                    DeliveryState.SENDING,
                ):
                    # The card itself is not out yet: edit it once it is.
                    raise DeliveryError("the message to edit is not delivered yet", retry_after=1.0)
                replaces_ref = target.sent_ref if target is not None else None
            if reply is None:
                reply = Reply.from_json(row.body)

            async def progress(pieces: int, ref: str | None) -> None:
                async with self._store.write() as tx:
                    await self._repo.mark_pieces_sent(tx, row.id, pieces, ref)

            sent_ref = await sender.send(Delivery(row, reply, replaces_ref, progress))
        except DeliveryError as exc:
            attempt = row.attempts + 1
            reason = str(exc)[:300]
            async with self._store.write() as tx:
                if exc.permanent or attempt >= self._max_attempts:
                    await self._repo.mark_failed(tx, row.id, reason)
                    await self._events.append(
                        tx,
                        "reply.failed",
                        actor="outbox",
                        subject=subject,
                        payload={"platform": row.platform, "error": reason, "attempts": attempt},
                    )
                    log.warning("reply %d to %s failed for good: %s", row.id, row.platform, reason)
                else:
                    # The platform's own wait is exact (Telegram's and Slack's
                    # retry_after); without one, the shared backoff.
                    delay = (
                        max(0.0, exc.retry_after)
                        if exc.retry_after is not None
                        else self._backoff.delay(attempt)
                    )
                    next_at = self._clock.now() + timedelta(seconds=delay)
                    await self._repo.mark_retry(tx, row.id, reason, next_at)
                    tx.on_commit(lambda: self._retry_at(next_at, row.id))
                    await self._events.append(
                        tx,
                        "reply.retry",
                        actor="outbox",
                        subject=subject,
                        payload={
                            "platform": row.platform,
                            "error": reason,
                            "attempt": attempt,
                            "wait_s": round(delay, 3),
                        },
                    )
            return
        except Exception as exc:  # a bug in a sender or a corrupt body: do not retry forever
            log.exception("reply %d could not be delivered", row.id)
            async with self._store.write() as tx:
                await self._repo.mark_failed(tx, row.id, f"{type(exc).__name__}: {exc}"[:300])
                await self._events.append(
                    tx,
                    "reply.failed",
                    actor="outbox",
                    subject=subject,
                    payload={"platform": row.platform, "error": type(exc).__name__},
                )
            return
        # Not waited for either: lost in a crash, the reply is sent again (at-least-once
        # after a crash, as before); the next commit of this turn carries it.
        async with self._store.write(durable=False) as tx:
            if not await self._repo.mark_sent(tx, row.id, self._clock.now(), sent_ref):
                log.error("reply %d was sent but was no longer claimed", row.id)
                return
            await self._events.append(
                tx,
                "reply.sent",
                actor="outbox",
                subject=subject,
                payload={"platform": row.platform, "chat": row.chat_id},
            )
