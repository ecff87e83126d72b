"""The reminders feature: /remind, /reminders, cancel and snooze, in the operator's zone.

A reminder is a job on the scheduler, owned by this feature, with the id
``reminder:<n>``: jobs are never deleted, so the highest number ever used is always
there to count on and a number is never given twice (numbering is serialized by a lock;
one process holds a home). A snoozed recurring reminder gets a one-off companion job
``reminder:<n>.snooze``; a snoozed one-off simply moves.

One-off times are read by :mod:`agents.when` (dateparser with the operator's local now
as its base, ``SOLOOPS_TIMEZONE``); recurring ones ("every monday 9am") by the
scheduler's plain-language grammar. An ambiguous time ("at 3") or a past one is asked
back with options carrying exact commands (``/remind at <ISO instant> <what>``), so the
answer is the same whichever option is picked and however late. The scheduler delivers
a reminder missed during downtime once, late (misfire ``once``), and the message says so.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from agents.base import Agent, AgentResult, TaskContext
from agents.errors import Refusal
from agents.feature import CommandSpec, Feature, Phrasings
from agents.intents import Conversation, Intent
from agents.ports import Ports
from agents.replies import Option, Reply
from agents.schedule_grammar import ScheduleError, compile_plain, parse_compiled, zone
from agents.schedule_port import FeatureSchedules
from agents.scheduler import JobSpec
from agents.schedules import fires_between
from config.durations import DurationError, parse_duration
from memory.clock import Clock
from memory.jobs import Job, JobState

if TYPE_CHECKING:
    from agents.when import Ambiguous, Past, Resolved
    from memory.digest_facts import Section

# agents.when (date reading) is imported where a reminder is read or shown: a start
# that only answers /help never loads it (tests/bot/test_startup.py).

NAME = "reminders"
DUE_KIND = "reminder_due"
MAX_TEXT = 500
SNOOZES = ("1h", "1d")
USAGE = (
    "Write e.g. /remind tomorrow 9am call Bob, /remind in 20 minutes check the oven,"
    " /remind every monday 9am review the pipeline; /remind cancel <id>;"
    " /remind snooze <id> 1h."
)
_JOB = re.compile(r"^reminder:(?P<n>\d+)(?P<snooze>\.snooze)?$")
_EXACT = re.compile(r"^at\s+(?P<at>\d{4}-\d{2}-\d{2}T\S+)\s+(?P<what>.+)$", re.IGNORECASE)
_RECURRING_START = ("every", "each", "daily", "weekdays", "weekends", "hourly", "monthly")
_REMIND_ME = re.compile(r"^\s*(?:/remind(?:@\w+)?|remind\s+me)\b\s*", re.IGNORECASE)
_MAX_SCHEDULE_WORDS = 9


class RemindIntent(Intent):
    """Set, cancel or snooze a reminder: the words after /remind (or the whole message)."""

    kind: Literal["remind"] = "remind"
    text: str = Field(min_length=1, max_length=2000)


class RemindersIntent(Intent):
    """List the reminders still to come."""

    kind: Literal["reminders"] = "reminders"


class ReminderDueIntent(Intent):
    """A reminder's time has come (submitted by the scheduler)."""

    kind: Literal["reminder_due"] = "reminder_due"
    number: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    every: str | None = Field(default=None, max_length=200)
    source: str = Field(default="", max_length=256)


# --- pure parts ------------------------------------------------------------------------


def split_recurring(text: str) -> tuple[str, str] | None:
    """("every monday 9am", "review the pipeline") from a recurring reminder, or None.

    The schedule is the longest run of leading words (or trailing, after "to <what>")
    that the scheduler's plain-language grammar reads; it must start with "every",
    "daily", "weekdays"... so that "on friday at 3" stays a one-off.

    Raises:
        Refusal: a schedule form matched but its numbers are invalid ("at 25:00").
    """
    words = _REMIND_ME.sub("", text, count=1).split()
    what_first = bool(words) and words[0].lower() == "to"
    if what_first:
        words = words[1:]
    top = min(_MAX_SCHEDULE_WORDS, len(words) - 1)
    spans = (
        [(len(words) - n, len(words)) for n in range(top, 0, -1)]
        if what_first
        else [(0, n) for n in range(top, 0, -1)]
    )
    for start, end in spans:
        if words[start].lower() not in _RECURRING_START:
            continue
        schedule = " ".join(words[start:end])
        try:
            compiled = compile_plain(schedule)
        except ScheduleError as exc:
            raise Refusal(f"{exc}. {USAGE}") from None
        if compiled is None:
            continue
        rest = words[:start] + words[end:]
        if rest and rest[0].lower() == "to":
            rest = rest[1:]
        what = " ".join(rest).strip(" ,.")
        if what:
            return schedule, what
    return None


def exact_command(at: datetime, what: str) -> str:
    """The unambiguous command for a reminder at ``at``: what an option sends."""
    return f"/remind at {at.isoformat(timespec='minutes')} {what}"


def when_options(result: Ambiguous | Past, what: str) -> tuple[Option, ...]:
    """The choices offered for an ambiguous or past time."""
    from agents.when import Ambiguous

    choices = result.choices if isinstance(result, Ambiguous) else (result.suggestion,)
    return tuple(
        Option(label=choice.text, command=exact_command(choice.at, what))
        for choice in choices
        if choice is not None
    )


def reminder_number(job_id: str) -> int | None:
    """The reminder number of a job id (``reminder:4`` and ``reminder:4.snooze``: 4)."""
    match = _JOB.match(job_id)
    return None if match is None else int(match.group("n"))


def due_message(intent: ReminderDueIntent, tz: str) -> Reply:
    """The reminder itself, with Snooze options; a late one says when it was due."""
    from agents.when import local_text

    text = f"⏰ Reminder #{intent.number}: {intent.text}"
    run = intent.scheduled
    if run is not None and run.late:
        due = local_text((run.missed_since or run.scheduled_at).astimezone(zone(tz)))
        text += f"\n(Late: it was due {due}; soloops was not running then.)"
    options = [
        Option(label=f"Snooze {span}", command=f"/remind snooze {intent.number} {span}")
        for span in SNOOZES
    ]
    if intent.every:
        options.append(Option(label="Stop it", command=f"/remind cancel {intent.number}"))
    return Reply(text=text, options=tuple(options))


def _id_arg(word: str) -> int:
    raw = word.lstrip("#")
    if not raw.isdecimal() or len(raw) > 9 or int(raw) < 1:
        raise Refusal(f"{word!r} is not a reminder id. /reminders lists them.")
    return int(raw)


# --- the agent -------------------------------------------------------------------------


class RemindersAgent(Agent):
    """Sets reminders as scheduler jobs and says them when they come due."""

    name = NAME

    def __init__(self, schedules: FeatureSchedules, clock: Clock, timezone: str) -> None:
        self._schedules = schedules
        self._clock = clock
        self._tz = timezone
        self._numbering = asyncio.Lock()

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        match intent:
            case RemindIntent(text=text):
                return [await self._remind(text, intent.conversation, ctx)]
            case RemindersIntent():
                return [Reply(text=await self._list())]
            case ReminderDueIntent():
                return [due_message(intent, self._tz)]
        raise AssertionError(f"reminders got an intent it does not handle: {intent.kind}")

    async def _remind(self, text: str, conversation: Conversation, ctx: TaskContext) -> Reply:
        from agents.when import Ambiguous, Past, Unparseable, split_reminder

        words = _REMIND_ME.sub("", text, count=1).split()
        head = words[0].lower() if words else ""
        if head == "cancel":
            if len(words) != 2:
                raise Refusal("Write /remind cancel <id>. /reminders lists them.")
            return await self._cancel(_id_arg(words[1]))
        if head == "snooze":
            if len(words) not in (2, 3):
                raise Refusal("Write /remind snooze <id> 1h (or 30m, 1d).")
            return await self._snooze(_id_arg(words[1]), words[2] if len(words) == 3 else "1h")
        exact = _EXACT.match(" ".join(words))
        if exact:
            return await self._exact(exact.group("at"), exact.group("what"), conversation, ctx)
        recurring = split_recurring(text)
        if recurring is not None:
            return await self._recurring(*recurring, conversation, ctx)
        request = split_reminder(text, now=self._clock.now(), tz=self._tz)
        if isinstance(request, Unparseable):
            raise Refusal(f"{request.message} {USAGE}")
        when = request.when
        if isinstance(when, Ambiguous):
            return Reply(text=when.question, options=when_options(when, request.what))
        if isinstance(when, Past):
            if when.suggestion is None:
                raise Refusal(when.message)
            return Reply(text=when.message, options=when_options(when, request.what))
        return await self._one_off(when, request.what, conversation, ctx)

    async def _exact(
        self, raw: str, what: str, conversation: Conversation, ctx: TaskContext
    ) -> Reply:
        from agents.when import HOW, Resolved, local_text

        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise Refusal(f"{raw!r} is not a time with its UTC offset. {USAGE}")
        local = at.astimezone(zone(self._tz))
        if local <= self._clock.now():
            raise Refusal(f"{local_text(local)} has already passed. {HOW}")
        return await self._one_off(Resolved(local, local_text(local)), what, conversation, ctx)

    async def _one_off(
        self, when: Resolved, what: str, conversation: Conversation, ctx: TaskContext
    ) -> Reply:
        job = await self._create(when.at.isoformat(), what, None, conversation, ctx)
        number = reminder_number(job.id)
        return Reply(text=f"Reminder #{number} set for {when.text}: {what}")

    async def _recurring(
        self, schedule: str, what: str, conversation: Conversation, ctx: TaskContext
    ) -> Reply:
        job = await self._create(schedule, what, schedule, conversation, ctx)
        number = reminder_number(job.id)
        nxt = "" if job.next_run_at is None else f" (next {self._local(job.next_run_at)})"
        return Reply(text=f"Reminder #{number} set: {schedule}{nxt}: {what}")

    async def _create(
        self,
        schedule: str,
        what: str,
        every: str | None,
        conversation: Conversation,
        ctx: TaskContext,
    ) -> Job:
        if len(what) > MAX_TEXT:
            raise Refusal(f"A reminder's text is at most {MAX_TEXT} characters.")
        async with self._numbering:
            jobs = await self._schedules.mine()
            for job in jobs:  # a rerun of this task (after a crash) finds its reminder
                if job.payload.get("source") == ctx.idempotency_key:
                    return job
            used = [n for job in jobs if (n := reminder_number(job.id)) is not None]
            number = max(used, default=0) + 1
            payload = {
                "number": number,
                "text": what,
                "every": every,
                "source": ctx.idempotency_key,
                "conversation": conversation.model_dump(),
            }
            spec = JobSpec(
                id=f"reminder:{number}",
                owner=NAME,
                intent_kind=DUE_KIND,
                schedule=schedule,
                payload=payload,
                timezone=self._tz,
            )
            try:
                return await self._schedules.add(spec)
            except ScheduleError as exc:
                raise Refusal(f"{exc}. {USAGE}") from None

    async def _cancel(self, number: int) -> Reply:
        job = await self._schedules.get(f"reminder:{number}")
        if job is None:
            raise Refusal(f"There is no reminder #{number}. /reminders lists them.")
        if job.state is JobState.CANCELLED:
            return Reply(text=f"Reminder #{number} was already cancelled.")
        snooze = await self._schedules.get(f"reminder:{number}.snooze")
        if snooze is not None and snooze.state in (JobState.ACTIVE, JobState.PAUSED):
            await self._schedules.cancel(snooze.id)
        if job.state is JobState.DONE:
            if snooze is not None and snooze.state in (JobState.ACTIVE, JobState.PAUSED):
                return Reply(text=f"Reminder #{number}'s snooze is cancelled.")
            raise Refusal(f"Reminder #{number} has already gone off; nothing to cancel.")
        await self._schedules.cancel(job.id)
        return Reply(text=f"Reminder #{number} cancelled: {job.payload.get('text', '')}")

    async def _snooze(self, number: int, span: str) -> Reply:
        from agents.when import local_text

        try:
            delay = parse_duration(span)
        except DurationError as exc:
            raise Refusal(f"{exc} Write e.g. /remind snooze {number} 1h.") from None
        if delay > timedelta(days=366):
            raise Refusal("Snooze for at most a year.")
        job = await self._schedules.get(f"reminder:{number}")
        if job is None:
            raise Refusal(f"There is no reminder #{number}. /reminders lists them.")
        if job.state is JobState.CANCELLED:
            raise Refusal(f"Reminder #{number} was cancelled; set a new one with /remind.")
        at = (self._clock.now() + delay).astimezone(zone(self._tz))
        one_off = parse_compiled(job.compiled, job.schedule).one_off
        spec = JobSpec(
            id=job.id if one_off else f"{job.id}.snooze",
            owner=NAME,
            intent_kind=DUE_KIND,
            schedule=at.isoformat(),
            payload=job.payload,
            timezone=job.timezone,
        )
        try:
            await self._schedules.add(spec)
        except ScheduleError as exc:
            raise Refusal(str(exc)) from None
        return Reply(text=f"Reminder #{number} snoozed until {local_text(at)}.")

    def _local(self, at: datetime) -> str:
        from agents.when import local_text

        return local_text(at.astimezone(zone(self._tz)))

    async def _list(self) -> str:
        live = [
            (job.next_run_at, job)
            for job in await self._schedules.mine()
            if job.state is JobState.ACTIVE and job.next_run_at is not None
        ]
        if not live:
            return "No reminders set. " + USAGE
        lines = []
        for at, job in sorted(live, key=lambda pair: pair[0]):
            snoozed = job.id.endswith(".snooze")
            every = job.payload.get("every")
            how = f"{every}, next " if every and not snoozed else ""
            mark = " (snoozed)" if snoozed else ""
            what = job.payload.get("text", "")
            lines.append(f"#{reminder_number(job.id)} {how}{self._local(at)}{mark}: {what}")
        return "\n".join(lines)

    async def due(self, now: datetime, horizon: datetime) -> Section | None:
        """This feature's section of the digest and ``/today`` (None when empty)."""
        from memory.digest_facts import Section

        lines = await self.due_lines(now, horizon - now)
        return Section("Reminders", tuple(lines)) if lines else None

    async def due_lines(self, now: datetime, horizon: timedelta) -> list[str]:
        """Reminders going off in ``(now, now + horizon]``, one line each, soonest first
        (for the digest and /today)."""
        found: list[tuple[datetime, str]] = []
        for job in await self._schedules.mine():
            if job.state is not JobState.ACTIVE:
                continue
            schedule = parse_compiled(job.compiled, job.schedule)
            for at in fires_between(schedule, zone(job.timezone), now, now + horizon, limit=50):
                what = job.payload.get("text", "")
                line = f"{self._local(at)} · Reminder #{reminder_number(job.id)}: {what}"
                found.append((at, line))
        return [line for _, line in sorted(found, key=lambda item: item[0])]


def build(ports: Ports) -> RemindersAgent:
    """The reminders agent over its own jobs, in the operator's time zone."""
    return RemindersAgent(ports.schedules, ports.clock, ports.settings.timezone)


def _text(rest: str) -> dict[str, str]:
    return {"text": rest}


FEATURE = Feature(
    name=NAME,
    build=build,
    bind="remind",  # plain text in a topic bound to reminders is a /remind
    intents=(RemindIntent, RemindersIntent, ReminderDueIntent),
    commands=(
        CommandSpec(
            "remind",
            "remind",
            "remind <when> <what> | cancel <id> | snooze <id> <1h>",
            "a reminder at a time, or every week/day (your time zone)",
            "/remind tomorrow 9am call Bob",
            "text",
            _text,
        ),
        CommandSpec("reminders", "reminders", "reminders", "the reminders still to come"),
    ),
    phrasings={
        "remind": Phrasings(
            "Set a reminder",
            (
                "remind me tomorrow at 9 to call Bob",
                "remind me on friday at 3 to send the proposal",
                "remind me in 20 minutes to check the oven",
                "in 20 minutes check the oven",
                "in an hour call the accountant",
                "tomorrow 9am call Bob",
                "remind me next monday to renew the domain",
                "every monday 9am review the pipeline",
                "remind me every day at 8 to check the inbox",
                "set a reminder for 24 nov 15:00 to pay the rent",
            ),
            text_field="text",
        ),
        "reminders": Phrasings(
            "List my reminders",
            ("what reminders do I have", "show my reminders", "list my reminders"),
        ),
    },
)
