"""The digest's read port: the facts of one read plus every feature's due items.

The digest feature never holds the store, the coordinator or another agent. The
runtime builds one :class:`DigestSource` with what it needs:

- ``read``: the store's facts at an instant (:func:`memory.reports.gather_digest_facts`
  over a read-only snapshot of the database file, so it never blocks the writer);
- :class:`DueItems`: each installed agent's :meth:`agents.base.Agent.due` section.

Every feature contributes through the one hook on :class:`~agents.base.Agent`::

    async def due(self, now: datetime, horizon: datetime) -> Section | None

A feature whose hook raises costs the digest that one section (it says so), never
the digest itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agents.base import Agent

if TYPE_CHECKING:
    from memory.digest_facts import DigestFacts, Section

log = logging.getLogger(__name__)

ReadFacts = Callable[[datetime], Awaitable["DigestFacts"]]


def end_of_day(now: datetime, timezone: str, days_ahead: int = 0) -> datetime:
    """The instant local midnight ends the day ``days_ahead`` after ``now``'s local day."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date() + timedelta(days=days_ahead + 1)
    return datetime.combine(day, time(), tzinfo=zone)


class DueItems:
    """Collects :meth:`Agent.due` sections from the installed agents, in feature order.

    The agents are bound after they are built (:meth:`bind`): a feature's ports exist
    before its agent does.
    """

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def bind(self, agents: Mapping[str, Agent]) -> None:
        """The installed agents, by feature name."""
        self._agents = dict(agents)

    async def sections(self, now: datetime, horizon: datetime) -> tuple[Section, ...]:
        """Each agent's non-empty due section (a failing hook becomes a one-line section)."""
        from memory.digest_facts import Section  # loads with the first digest or /today

        found: list[Section] = []
        for name, agent in self._agents.items():
            try:
                section = await agent.due(now, horizon)
            except Exception as exc:
                log.exception("%s could not say what is due", name)
                section = Section(
                    f"{name}: due items unavailable", (f"• {type(exc).__name__}: {exc}"[:200],)
                )
            if section is not None and section.lines:
                found.append(section)
        return tuple(found)


class DigestSource:
    """What the digest reads: the store's facts and the features' due items."""

    def __init__(self, read: ReadFacts, due: DueItems, timezone: str) -> None:
        self._read = read
        self._due = due
        self.timezone = timezone

    async def facts(self, now: datetime, horizon: datetime) -> DigestFacts:
        """The facts at ``now``, with the sections of what falls due before ``horizon``."""
        facts = await self._read(now)
        return replace(facts, due=await self._due.sections(now, horizon))
