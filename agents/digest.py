"""The digest feature: the daily digest, ``/digest``, ``/today`` and ``/runbook``.

The daily digest is a standing job per home conversation (``digest.daily@<home>``) at
``SOLOOPS_DIGEST__AT`` local time (``SOLOOPS_TIMEZONE``), misfire ``once``: after
downtime exactly one late digest comes at start, saying it is late. A run reads the
facts in one snapshot plus every feature's due items (:class:`DigestSource`), composes
them (:func:`agents.digest_compose.compose_digest`, no I/O), draws the week's chart,
keeps it in the home's files and answers with the text and the chart as a photo. The
cards the digest names (dead letters, pending approvals) are shown again with their
buttons, just before the digest. Delivery goes through the outbox like every reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from agents.base import Agent, TaskContext
from agents.digest_port import DigestSource, end_of_day
from agents.feature import CommandSpec, Feature
from agents.intents import Conversation, Intent, Scheduled
from agents.ports import ApprovalsView, Ports, Reports
from agents.replies import Attachment, Reply
from agents.scheduler import JobSpec
from config import Settings
from memory.clock import Clock
from memory.files import FileStore

if TYPE_CHECKING:
    from agents.digest_compose import Digest

# Composing, the chart and the runbooks are imported when a digest, /today or /runbook
# is made: a start that only answers /help never loads them (tests/bot/test_startup.py).

NAME = "digest"
JOB_PREFIX = "digest.daily"


class DigestIntent(Intent):
    """Send the digest now (``/digest``), or the daily run of the digest job."""

    kind: Literal["digest"] = "digest"


class TodayIntent(Intent):
    """What needs the operator now: pending approvals, due items, open failures."""

    kind: Literal["today"] = "today"


class RunbookIntent(Intent):
    """Show one runbook, or list them."""

    kind: Literal["runbook"] = "runbook"
    name: str | None = Field(default=None, max_length=64)


def job_id(home: Conversation) -> str:
    """The digest job's stable id for one home: ``digest.daily@telegram:42[:topic]``."""
    where = f"{home.platform}:{home.chat_id}"
    return f"{JOB_PREFIX}@{where}" + (f":{home.thread_id}" if home.thread_id else "")


def digest_jobs(settings: Settings, homes: tuple[Conversation, ...]) -> list[JobSpec]:
    """One daily job per home conversation, at ``SOLOOPS_DIGEST__AT`` local time (none
    when ``SOLOOPS_DIGEST__ENABLED`` is false; /digest still works on demand)."""
    if not settings.digest.enabled:
        return []
    return [
        JobSpec(
            id=job_id(home),
            owner=NAME,
            intent_kind="digest",
            schedule=f"every day at {settings.digest.at}",
            payload={"conversation": home.model_dump(mode="json")},
            misfire="once",
        )
        for home in homes
    ]


def late_note(scheduled: Scheduled, timezone: str) -> str:
    """The line a late digest starts with: when it was due, since when soloops was down."""
    zone = ZoneInfo(timezone)
    due = scheduled.scheduled_at.astimezone(zone)
    note = f"Late: this digest was due {due:%a %d %b %H:%M}"
    if scheduled.missed_since is not None and scheduled.missed_since != scheduled.scheduled_at:
        since = scheduled.missed_since.astimezone(zone)
        note += f" (runs missed since {since:%a %d %b %H:%M}"
        note += f", {scheduled.coalesced} folded into this one)" if scheduled.coalesced else ")"
    return note + "; soloops was not running then."


def _runbook_list() -> str:
    from config.runbooks import kinds, runbook

    return "\n".join(f"• {kind}: {runbook(kind).title}" for kind in kinds())


class DigestAgent(Agent):
    """Composes the digest and /today from one read, and shows runbooks."""

    name = NAME

    def __init__(
        self,
        source: DigestSource,
        approvals: ApprovalsView,
        files: FileStore,
        reports: Reports,
        clock: Clock,
        homes: Sequence[Conversation],
        *,
        daily: bool = True,
    ) -> None:
        self._daily = daily
        self._source = source
        self._approvals = approvals
        self._files = files
        self._reports = reports
        self._clock = clock
        self._platforms = frozenset(home.platform for home in homes)

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        match intent:
            case DigestIntent():
                return await self._digest(intent)
            case TodayIntent():
                now = self._clock.now()
                facts = await self._source.facts(now, end_of_day(now, self._source.timezone))
                from agents.digest_compose import compose_today

                today = compose_today(facts)
                return [Reply(text=today.text)]
            case RunbookIntent(name=name):
                return [await self._runbook(name, intent.conversation)]
        raise AssertionError(f"digest got an intent it does not handle: {intent.kind}")

    async def _runbook(self, name: str | None, conversation: Conversation) -> Reply:
        from config.runbooks import RunbookNotFound, runbook

        if not name:
            return Reply(text=f"Runbooks (show one with /runbook <kind>):\n{_runbook_list()}")
        try:
            return Reply(text=runbook(name.strip().lower()).text.strip())
        except RunbookNotFound:
            # Not a Refusal: the answer is the list of kinds, longer than a refusal line.
            seq = await self._reports.record(
                "runbook.unknown", actor=conversation.actor, payload={"asked": name[:64]}
            )
            return Reply(
                text=f"There is no runbook {name!r} (event #{seq}). Type /runbook <kind>,"
                f" one of:\n{_runbook_list()}",
                tone="error",
            )

    async def _digest(self, intent: DigestIntent) -> Sequence[Reply]:
        conversation = intent.conversation
        if intent.scheduled is not None and not self._daily:
            # Switched off (SOLOOPS_DIGEST__ENABLED=false) after an earlier run declared it.
            await self._reports.record(
                "digest.skipped",
                actor=NAME,
                subject=f"job:{intent.scheduled.job_id}",
                payload={"reason": "the daily digest is switched off"},
            )
            return []
        if intent.scheduled is not None and conversation.platform not in self._platforms:
            # A home of a front end this run does not have (declared by an earlier run):
            # nobody would read it, and its reply would wait in the outbox for ever.
            await self._reports.record(
                "digest.skipped",
                actor=NAME,
                subject=f"job:{intent.scheduled.job_id}",
                payload={"reason": f"{conversation.platform} is not running"},
            )
            return []
        now = self._clock.now()
        timezone = self._source.timezone
        facts = await self._source.facts(now, end_of_day(now, timezone, days_ahead=1))
        from agents.digest_chart import week_chart
        from agents.digest_compose import compose_digest

        digest = compose_digest(facts)
        chart = await asyncio.to_thread(week_chart, facts.week)
        filename = f"digest-{now.astimezone(ZoneInfo(timezone)):%Y-%m-%d}.png"
        path = await self._files.save(chart, filename)
        await self._show_cards(digest, conversation)
        text = digest.text
        if intent.scheduled is not None and intent.scheduled.late:
            text = f"{late_note(intent.scheduled, timezone)}\n\n{text}"
        if digest.cards:
            text += f"\n\n{len(digest.cards)} card(s) shown again above, with their buttons."
        await self._reports.record(
            "digest.sent",
            actor=NAME,
            subject=f"conversation:{conversation.lane}",
            payload={
                "late": bool(intent.scheduled and intent.scheduled.late),
                "all_clear": digest.all_clear,
                "sections": list(digest.sections),
            },
        )
        photo = Attachment(path=str(path), filename=filename, mime="image/png", kind="photo")
        return [Reply(text=text, attachments=(photo,))]

    async def _show_cards(self, digest: Digest, conversation: Conversation) -> None:
        if not digest.cards:
            return
        wanted = {card.approval_id for card in digest.cards}
        rows = [row for row in await self._approvals.pending() if row.id in wanted]
        order = [card.approval_id for card in digest.cards]
        rows.sort(key=lambda row: order.index(row.id))
        await self._approvals.show_again(rows, conversation)


def build(ports: Ports) -> DigestAgent:
    """The digest agent over the digest port, the approvals view and the files."""
    return DigestAgent(
        ports.require_digest(),
        ports.approvals,
        ports.files,
        ports.reports,
        ports.clock,
        ports.homes,
        daily=ports.settings.digest.enabled,
    )


def _runbook_args(text: str | None) -> dict[str, Any]:
    return {"name": text.strip()} if text and text.strip() else {}


FEATURE = Feature(
    name=NAME,
    build=build,
    intents=(DigestIntent, TodayIntent, RunbookIntent),
    commands=(
        CommandSpec("digest", "digest", "digest", "the daily digest, now"),
        CommandSpec(
            "today", "today", "today", "what needs you now: approvals, due items, failures"
        ),
        CommandSpec(
            "runbook",
            "runbook",
            "runbook [kind]",
            "what to do about a kind of failure",
            "/runbook webhook-rejected",
            "optional_text",
            _runbook_args,
        ),
    ),
    control_kinds=frozenset({"digest", "today", "runbook"}),
    jobs=digest_jobs,
)
