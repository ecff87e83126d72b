"""The schedule grammar: what jobs are written in, read into plain data. No I/O.

A schedule is one of:

- a one-off instant, ISO 8601 with a UTC offset: ``2026-05-01T09:00+02:00``;
- a 5-field cron expression (minute hour day-of-month month day-of-week):
  ``0 8 * * *``; names (``mon``, ``jan``) and ``*/n``, ``a-b``, ``a,b`` work, and when
  both day fields are restricted a day matching either runs (classic cron);
- a plain-language form from :data:`GRAMMAR`, compiled to cron: ``every day at 8:00``,
  ``weekdays at 9``, ``every 1st of the month`` ...

Also read here: IANA time zones, misfire policies (``once``, ``all``,
``skip-if-older-than 2h``) and durations. When a schedule fires is
:mod:`agents.schedules`' business.

ScheduleError (AgentsError)  bad schedule, time zone, misfire policy or duration text
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.errors import AgentsError
from config import durations
from config.durations import format_duration


class ScheduleError(AgentsError):
    """Schedule, time zone, misfire or duration text that cannot be read; ``str()`` says
    what to write instead."""


# --- durations -------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """:func:`config.durations.parse_duration`, failing as a ScheduleError.

    Raises:
        ScheduleError: the text is not a positive duration.
    """
    try:
        return durations.parse_duration(text)
    except durations.DurationError as exc:
        raise ScheduleError(str(exc)) from None


# --- cron ------------------------------------------------------------------------------

_MONTHS: Final = ("jan", "feb", "mar", "apr", "may", "jun",
                  "jul", "aug", "sep", "oct", "nov", "dec")  # fmt: skip
_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True, slots=True)
class Cron:
    """A compiled 5-field cron expression. Weekdays count from 0 = Sunday."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, day: date) -> bool:
        """Whether the job runs on this local calendar day."""
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def times(self) -> list[time]:
        """The local wall-clock times of a matching day, in order."""
        return [time(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]


def _cron_value(token: str, lo: int, hi: int, names: Sequence[str], what: str) -> int:
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = names.index(token) + (1 if names is _MONTHS else 0)
    else:
        raise ScheduleError(f"{token!r} is not a valid {what} in a cron expression")
    if not lo <= value <= hi:
        raise ScheduleError(f"{what} {value} is out of range {lo}-{hi} in a cron expression")
    return value


def _cron_field(text: str, lo: int, hi: int, names: Sequence[str], what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{part!r}: the step after '/' must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            left, _, right = base.partition("-")
            first = _cron_value(left, lo, hi, names, what)
            last = _cron_value(right, lo, hi, names, what)
            if first > last:
                raise ScheduleError(f"{part!r}: a range must go from low to high")
        else:
            first = _cron_value(base, lo, hi, names, what)
            last = hi if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> Cron:
    """Compile a 5-field cron expression.

    Raises:
        ScheduleError: a field is malformed or out of range, or no day ever matches.
    """
    fields = expression.lower().split()
    if len(fields) != 5:
        raise ScheduleError(
            f"{expression!r}: a cron expression has 5 fields (minute hour day month weekday),"
            " e.g. '0 8 * * *'"
        )
    minute, hour, day, month, weekday = fields
    weekdays = _cron_field(weekday, 0, 7, _WEEKDAYS, "weekday")
    cron = Cron(
        expression=" ".join(fields),
        minutes=_cron_field(minute, 0, 59, (), "minute"),
        hours=_cron_field(hour, 0, 23, (), "hour"),
        days=_cron_field(day, 1, 31, (), "day of month"),
        months=_cron_field(month, 1, 12, _MONTHS, "month"),
        # 7 is Sunday too, as in most crons.
        weekdays=frozenset(d % 7 for d in weekdays),
        days_restricted=not day.startswith("*"),
        weekdays_restricted=not weekday.startswith("*"),
    )
    if not (cron.days_restricted and cron.weekdays_restricted) and not any(
        d <= _DAYS_IN_MONTH[m - 1] for m in cron.months for d in cron.days
    ):
        raise ScheduleError(f"{expression!r} never runs: no month has that day")
    return cron


# --- plain language --------------------------------------------------------------------

_TIME = r"(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))?\s*(?P<ampm>am|pm)?"
_DAY = (
    r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?"
    r"|mon|tues?|wed|thu(?:rs?)?|fri|sat|sun"
)
_DAYS = rf"(?P<days>(?:{_DAY})(?:\s*(?:,|and|&)\s*(?:{_DAY}))*)"
_ORDINAL = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"


def _clock(match: re.Match[str], default: tuple[int, int] | None = None) -> tuple[int, int]:
    """(hour, minute) from the ``_TIME`` groups of a match."""
    if match.group("hour") is None:
        if default is None:  # pragma: no cover - every rule without a time passes one
            raise ScheduleError("a time of day is needed, e.g. 'at 9:30'")
        return default
    hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
    ampm = match.group("ampm")
    shown = match.group(0).strip()
    if ampm:
        if not 1 <= hour <= 12:
            raise ScheduleError(f"{hour}{ampm} is not a time; with am/pm the hour is 1-12")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        raise ScheduleError(f"'{shown}' has no valid time of day; write e.g. 9:30, 18:00 or 9am")
    return hour, minute


def _weekday_numbers(text: str) -> str:
    numbers: list[int] = []
    for word in re.split(r"\s*(?:,|and|&)\s*", text):
        number = _WEEKDAYS.index(word[:3])
        if number not in numbers:
            numbers.append(number)
    return ",".join(str(n) for n in sorted(numbers))


def _month_day(match: re.Match[str]) -> int:
    day = int(match.group("day"))
    if not 1 <= day <= 31:
        raise ScheduleError(f"day {day} of the month does not exist; use 1-31")
    return day


def _daily(m: re.Match[str]) -> str:
    hour, minute = _clock(m)
    return f"{minute} {hour} * * *"


def _on_weekdays(days: str) -> Callable[[re.Match[str]], str]:
    def build(m: re.Match[str]) -> str:
        hour, minute = _clock(m)
        return f"{minute} {hour} * * {days}"

    return build


def _named_days(m: re.Match[str]) -> str:
    hour, minute = _clock(m)
    return f"{minute} {hour} * * {_weekday_numbers(m.group('days'))}"


def _every_minutes(m: re.Match[str]) -> str:
    step = int(m.group("n") or 1)
    if step < 1 or 60 % step:
        raise ScheduleError(
            "every N minutes needs N that divides the hour: 1, 2, 3, 4, 5, 6, 10, 12, 15,"
            " 20 or 30 (or write a cron expression)"
        )
    return "* * * * *" if step == 1 else f"*/{step} * * * *"


def _every_hours(m: re.Match[str]) -> str:
    step = int(m.group("n") or 1)
    if step < 1 or 24 % step:
        raise ScheduleError(
            "every N hours needs N that divides the day: 1, 2, 3, 4, 6, 8 or 12"
            " (or write a cron expression)"
        )
    return "0 * * * *" if step == 1 else f"0 */{step} * * *"


def _monthly(m: re.Match[str]) -> str:
    # Without a time a monthly job runs at midnight, as a cron "0 0 d * *" would.
    hour, minute = _clock(m, default=(0, 0))
    return f"{minute} {hour} {_month_day(m)} * *"


@dataclass(frozen=True, slots=True)
class Rule:
    """One plain-language form: its pattern, what it compiles to, and an example."""

    pattern: re.Pattern[str]
    compile: Callable[[re.Match[str]], str]
    example: str


def _rule(pattern: str, build: Callable[[re.Match[str]], str], example: str) -> Rule:
    return Rule(re.compile(rf"^{pattern}$"), build, example)


#: The plain-language forms, tried in order on lower-cased text with single spaces.
GRAMMAR: Final[tuple[Rule, ...]] = (
    _rule(rf"(?:every day|everyday|daily|each day)(?: at)? {_TIME}", _daily, "every day at 8:00"),
    _rule(rf"(?:every )?weekdays?(?: at)? {_TIME}", _on_weekdays("1-5"), "weekdays at 9"),
    _rule(rf"(?:every )?weekends?(?: at)? {_TIME}", _on_weekdays("0,6"), "weekends at 10"),
    _rule(rf"(?:every|on) {_DAYS}(?: at)? {_TIME}", _named_days, "every mon and thu at 9:30"),
    _rule(r"(?:every minute|every (?P<n>\d+) minutes?)", _every_minutes, "every 15 minutes"),
    _rule(r"(?:every hour|hourly|every (?P<n>\d+) hours?)", _every_hours, "every hour"),
    _rule(
        rf"every {_ORDINAL} (?:day )?of (?:the|each|every) month(?: at {_TIME})?",
        _monthly,
        "every 1st of the month at 9",
    ),
    _rule(
        rf"(?:every month|monthly) on the {_ORDINAL}(?: at {_TIME})?",
        _monthly,
        "every month on the 15th",
    ),
)

ACCEPTED_FORMS: Final[str] = (
    "a time with its UTC offset (2026-05-01T09:00+02:00), a cron expression ('0 8 * * *'),"
    " or: every day at 8:00 · daily at 18:30 · every monday 9am · every mon and thu at 9:30"
    " · weekdays at 9 · weekends at 10 · every hour · every 15 minutes"
    " · every 1st of the month at 9 · every month on the 15th"
)


def compile_plain(text: str) -> str | None:
    """The cron expression a plain-language schedule compiles to, or None if no form
    of :data:`GRAMMAR` matches.

    Raises:
        ScheduleError: a form matches but its numbers are invalid ("at 25:00").
    """
    normalized = " ".join(text.lower().split())
    for rule in GRAMMAR:
        match = rule.pattern.match(normalized)
        if match:
            return rule.compile(match)
    return None


# --- schedules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: either a cron (recurring) or a one-off UTC instant."""

    text: str
    cron: Cron | None = None
    at: datetime | None = None

    @property
    def compiled(self) -> str:
        """The stored form: ``cron 0 8 * * *`` or ``at 2026-05-01T07:00:00+00:00``."""
        if self.at is not None:
            return f"at {self.at.isoformat()}"
        assert self.cron is not None
        return f"cron {self.cron.expression}"

    @property
    def one_off(self) -> bool:
        return self.at is not None


_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")


def parse_schedule(text: str) -> Schedule:
    """Read a schedule as the operator or a feature wrote it.

    Raises:
        ScheduleError: the text is not a schedule; the message lists the accepted forms.
    """
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ScheduleError(f"a schedule is needed: {ACCEPTED_FORMS}")
    if _ISO_START.match(cleaned):
        try:
            moment = datetime.fromisoformat(cleaned)
        except ValueError:
            raise ScheduleError(
                f"{cleaned!r} is not a valid date and time; write e.g. 2026-05-01T09:00+02:00"
            ) from None
        if moment.tzinfo is None:
            raise ScheduleError(
                f"{cleaned!r} needs a UTC offset so it means one instant,"
                " e.g. 2026-05-01T09:00+02:00 or 2026-05-01T07:00Z"
            )
        return Schedule(cleaned, at=moment.astimezone(UTC))
    fields = cleaned.split()
    if len(fields) == 5 and re.fullmatch(r"[\d*][\d*/,\-]*", fields[0]):
        return Schedule(cleaned, cron=parse_cron(cleaned))
    expression = compile_plain(cleaned)
    if expression is None:
        raise ScheduleError(f"I can't read {cleaned!r} as a schedule. Use {ACCEPTED_FORMS}")
    return Schedule(cleaned, cron=parse_cron(expression))


def parse_compiled(compiled: str, text: str = "") -> Schedule:
    """Rebuild a :class:`Schedule` from its :attr:`Schedule.compiled` form."""
    kind, _, body = compiled.partition(" ")
    if kind == "at":
        return Schedule(text or body, at=datetime.fromisoformat(body).astimezone(UTC))
    if kind == "cron":
        return Schedule(text or body, cron=parse_cron(body))
    raise ScheduleError(f"{compiled!r} is not a compiled schedule")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ScheduleError: no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{name!r} is not a time zone; use an IANA name like Europe/Berlin or UTC"
        ) from None


# --- misfires --------------------------------------------------------------------------


class MisfireKind(StrEnum):
    """What to do with runs missed while soloops was down."""

    ONCE = "once"
    ALL = "all"
    SKIP_OLDER = "skip-if-older-than"


@dataclass(frozen=True, slots=True)
class MisfirePolicy:
    """A job's misfire policy; ``max_age`` only for ``skip-if-older-than``."""

    kind: MisfireKind = MisfireKind.ONCE
    max_age: timedelta | None = None

    @property
    def text(self) -> str:
        if self.kind is MisfireKind.SKIP_OLDER:
            assert self.max_age is not None
            return f"{self.kind} {format_duration(self.max_age)}"
        return str(self.kind)


def parse_misfire(text: str) -> MisfirePolicy:
    """Read ``once``, ``all`` or ``skip-if-older-than <duration>``.

    Raises:
        ScheduleError: anything else.
    """
    words = text.lower().split()
    if words == ["once"]:
        return MisfirePolicy(MisfireKind.ONCE)
    if words == ["all"]:
        return MisfirePolicy(MisfireKind.ALL)
    if len(words) >= 2 and words[0] == MisfireKind.SKIP_OLDER:
        return MisfirePolicy(MisfireKind.SKIP_OLDER, parse_duration(" ".join(words[1:])))
    raise ScheduleError(
        f"{text!r} is not a misfire policy; use once, all, or skip-if-older-than 2h"
    )
