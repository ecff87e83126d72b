"""Conversations bound to a feature (``/bind``): plain text there is that feature's command.

A binding is keyed by a :class:`Place` (platform, chat, thread): a Telegram forum topic,
a whole chat, a Slack channel. Binding and unbinding each write the row and its event
(``binding.set`` / ``binding.removed``) in one transaction; the gateway reads the row
inside the transaction that stores the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memory.clock import from_iso, to_iso
from memory.events import EventLog
from memory.store import Store, Transaction


@dataclass(frozen=True, slots=True)
class Place:
    """Where a binding holds: a platform's chat, and its thread (topic) when it has one."""

    platform: str
    chat_id: str
    thread_id: str | None = None

    @property
    def subject(self) -> str:
        """The binding's subject in the event log."""
        return f"binding:{self.platform}:{self.chat_id}:{self.thread_id or ''}"


@dataclass(frozen=True, slots=True)
class Binding:
    """One stored binding."""

    place: Place
    feature: str
    bound_by: str
    bound_at: datetime


class BindingRepo:
    """The ``bindings`` table and its events."""

    def __init__(self, store: Store, events: EventLog) -> None:
        self._store = store
        self._events = events

    async def get(self, place: Place, tx: Transaction | None = None) -> Binding | None:
        """The binding of ``place`` (read inside ``tx`` when given), or None."""
        sql = (
            "SELECT feature, bound_by, bound_at FROM bindings"
            " WHERE platform = ? AND chat_id = ? AND thread_id = ?"
        )
        params = (place.platform, place.chat_id, place.thread_id or "")
        row = await (tx.fetchone(sql, params) if tx else self._store.fetchone(sql, params))
        if row is None:
            return None
        return Binding(place, row["feature"], row["bound_by"], from_iso(row["bound_at"]))

    async def bind(
        self, place: Place, feature: str, *, command: str, actor: str, now: datetime
    ) -> Binding | None:
        """Bind ``place`` to ``feature`` (replacing any binding); return the one replaced."""
        async with self._store.write() as tx:
            previous = await self.get(place, tx)
            await tx.execute(
                "INSERT INTO bindings (platform, chat_id, thread_id, feature, bound_by, bound_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, chat_id, thread_id)"
                " DO UPDATE SET feature = excluded.feature, bound_by = excluded.bound_by,"
                " bound_at = excluded.bound_at",
                (place.platform, place.chat_id, place.thread_id or "", feature, actor, to_iso(now)),
            )
            payload: dict[str, object] = {"feature": feature, "command": command}
            if previous is not None:
                payload["previous"] = previous.feature
            await self._events.append(
                tx, "binding.set", actor=actor, subject=place.subject, payload=payload
            )
        return previous

    async def unbind(self, place: Place, *, actor: str) -> Binding | None:
        """Remove the binding of ``place``; return it (None when there was none)."""
        async with self._store.write() as tx:
            previous = await self.get(place, tx)
            if previous is None:
                return None
            await tx.execute(
                "DELETE FROM bindings WHERE platform = ? AND chat_id = ? AND thread_id = ?",
                (place.platform, place.chat_id, place.thread_id or ""),
            )
            await self._events.append(
                tx,
                "binding.removed",
                actor=actor,
                subject=place.subject,
                payload={"feature": previous.feature},
            )
        return previous
