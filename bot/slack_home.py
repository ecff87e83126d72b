"""The operator's Slack App Home tab, kept current with ``views.publish``.

    store commit (a reply or card queued, a task queued or retried) --publish--+
    app_home_opened (the operator looks) ---------------------------------------+--> dirty
                                                                                     |
    worker: wait for dirty -> one read of the board -> views.publish per operator <--+
            (then at most one more refresh per ``SOLOOPS_SLACK__HOME_REFRESH_S``)

What changes the board always commits something the store announces: a card raised,
decided, voided or expired queues a message or a card edit in the outbox; a failure
queues a dead-letter card or puts its task back with a retry time; a digest is a
reply; a due item is set by a reply ("Reminder set"). The Home tab listens to those
two topics (``outbox.queued``, ``tasks.queued``) instead of being called from the
coordinator: a change only sets a flag, so a burst of changes becomes one read and one
``views.publish`` per operator, and nothing the change's task does can wait on Slack
or fail because of it. A publish that fails is logged and tried again at the next
change (or the next time the operator opens the tab).

Only the configured operators get the dashboard. Anyone else who opens the Home tab
gets one short view saying the bot works for its operator, published once per person
per run (opening it again changes nothing, so it costs no further calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from agents.board import BoardReader
from bot.slack_views import View, home_view, stranger_home_view
from memory.outbox import QUEUED_TOPIC as OUTBOX_QUEUED
from memory.store import Store
from memory.tasks import QUEUED_TOPIC as TASKS_QUEUED

log = logging.getLogger(__name__)

TOPICS = (OUTBOX_QUEUED, TASKS_QUEUED)
MAX_STRANGERS = 1000  # remembered as already shown the short view


class HomeTab:
    """Publishes the Home tab for the operators, refreshed when the board may have changed."""

    def __init__(
        self, client: AsyncWebClient, operators: frozenset[str], *, min_interval_s: float = 2.0
    ) -> None:
        self._client = client
        self._operators = operators
        self._interval = min_interval_s
        self._reader: BoardReader | None = None
        self._store: Store | None = None
        self._dirty = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._notes: dict[str, str] = {}
        self._strangers: set[str] = set()  # shown the short view already
        self._strangers_due: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self.failures = 0  # publishes that failed (for logs and tests)

    def start(self, reader: BoardReader, store: Store) -> None:
        """Read the board with ``reader`` and refresh on ``store``'s change topics."""
        if not self._operators:
            return  # nobody to show a dashboard to
        self._reader = reader
        self._store = store
        for topic in TOPICS:
            store.subscribe(topic, self.changed)
        self._worker = asyncio.create_task(self._run(), name="slack-home")

    async def stop(self) -> None:
        """Stop refreshing (a publish in flight is cancelled: the next start publishes)."""
        if self._store is not None:
            for topic in TOPICS:
                self._store.unsubscribe(topic, self.changed)
            self._store = None
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def changed(self, _what: object = None) -> None:
        """Something the board shows may have changed: refresh soon (never blocks)."""
        self._dirty = True
        self._wake.set()

    def opened(self, user_id: str) -> None:
        """``user_id`` opened the Home tab: the operator gets a fresh board, anyone else
        the short view (once)."""
        if user_id in self._operators:
            self.changed()
        elif user_id not in self._strangers and len(self._strangers) < MAX_STRANGERS:
            self._strangers.add(user_id)
            self._strangers_due.add(user_id)
            self._wake.set()

    def note(self, user_id: str, text: str) -> None:
        """Show ``text`` on top of ``user_id``'s Home (what became of their last press)
        until their next press replaces it: a refresh a moment later (the reply the
        press caused) must not wipe it before it was read."""
        if user_id in self._operators:
            self._notes[user_id] = text
            self.changed()

    async def flush(self) -> None:
        """Publish now what is due (a changed board, strangers' views); a no-op when
        nothing is. Tests await it instead of waiting for the worker."""
        async with self._lock:
            strangers, self._strangers_due = self._strangers_due, set()
            for user in sorted(strangers):
                await self._publish(user, stranger_home_view())
            if not self._dirty or self._reader is None:
                return
            self._dirty = False
            try:
                board = await self._reader.read()
            except Exception:  # the board is a view: its failure must not stop refreshes
                log.exception("could not read the board for the Slack Home tab")
                return
            for user in sorted(self._operators):
                note = self._notes.get(user)
                await self._publish(user, home_view(board, note))

    async def _publish(self, user: str, view: View) -> None:
        try:
            await self._client.views_publish(user_id=user, view=view)
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            self.failures += 1
            error: object = exc
            if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
                error = exc.response.get("error")
            log.warning(
                "Slack Home tab for %s not published (%s); next change retries", user, error
            )

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("Slack Home tab refresh failed; the next change retries")
            if self._interval > 0:
                # At most one refresh per interval: changes meanwhile set the flag again.
                await asyncio.sleep(self._interval)
