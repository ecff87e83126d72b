"""One-off reminder times from plain words, in the operator's time zone. Pure.

``resolve_when("tomorrow 9am", now=..., tz="Europe/Berlin")`` returns one of:

- :class:`Resolved`: the aware instant and how to say it ("Sun 25 Oct 09:00 CET");
- :class:`Ambiguous`: several readings to offer as choices ("at 3": 03:00 or 15:00; a
  bare weekday that is today: today or in a week);
- :class:`Past`: the time has already passed (with tomorrow's same time to offer);
- :class:`Unparseable`: with a message showing how to write a time.

How: the clock time ("9am", "15:00", "at 3", "noon") is read here, because dateparser
reads "friday at 3" as a date in March; the remaining day words ("tomorrow", "next
monday", "24 nov") go to dateparser with the operator's local "now" as its relative
base and ``PREFER_DATES_FROM=future``. "in 20 minutes" / "in 2 hours" is counted in
real elapsed time (correct across a DST change); "in 3 days" keeps the wall-clock time.
A day without a clock time means :data:`DEFAULT_TIME` (09:00). A wall time that does
not exist (skipped by a spring-forward change) moves forward by the gap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_TIME = time(9, 0)
HOW = (
    "Write a time like 'tomorrow 9am', 'friday 15:00', 'in 20 minutes', 'next monday' "
    "or '24 nov 15:00'."
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "h": timedelta(hours=1),
}
_RELATIVE = re.compile(
    r"^in\s+(?P<n>\d{1,4}|an?|one)\s+(?P<unit>seconds?|minutes?|mins?|hours?|h|days?|weeks?)$",
    re.IGNORECASE,
)
_CLOCK_12 = re.compile(
    r"(?:\bat\s+)?\b(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap])\.?m\.?(?!\w)", re.IGNORECASE
)
_CLOCK_24 = re.compile(r"(?:\bat\s+)?\b(?P<h>\d{1,2}):(?P<m>\d{2})\b", re.IGNORECASE)
_AT_HOUR = re.compile(r"\bat\s+(?P<h>\d{1,2})\b(?!\s*(?:[:.]|\w))", re.IGNORECASE)
_DAY_HOUR = re.compile(
    r"\b(?P<day>today|tomorrow|tonight|" + "|".join(_WEEKDAYS) + r")\s+(?P<h>\d{1,2})$",
    re.IGNORECASE,
)
_WORD_TIMES = {"noon": time(12, 0), "midday": time(12, 0), "midnight": time(0, 0)}
_ONLY_WEEKDAY = re.compile(r"^(?:on\s+)?(?P<day>" + "|".join(_WEEKDAYS) + r")$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A reminder time: the aware instant (in the operator's zone) and its local text."""

    at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """More than one reading; ask which one, offering ``choices``."""

    question: str
    choices: tuple[Resolved, ...]


@dataclass(frozen=True, slots=True)
class Past:
    """The time has passed; ``suggestion`` (if any) is the same time tomorrow."""

    message: str
    suggestion: Resolved | None


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Not a time this parser can read; ``message`` says how to write one."""

    message: str


WhenResult = Resolved | Ambiguous | Past | Unparseable


def local_text(at: datetime) -> str:
    """How a reminder time is shown: "Fri 24 Nov 15:00 CET"."""
    return f"{at:%a} {at.day} {at:%b %H:%M} {at.tzname()}"


def resolve_when(text: str, *, now: datetime, tz: str) -> WhenResult:
    """Resolve ``text`` relative to the aware ``now`` in the IANA zone ``tz``."""
    zone = ZoneInfo(tz)
    local_now = now.astimezone(zone)
    phrase = " ".join(text.strip().lower().split()).rstrip(".,!")
    if not phrase:
        return Unparseable("When? " + HOW)
    relative = _relative(phrase, now, zone)
    if relative is not None:
        return relative
    clock, rest, ambiguous_hour = _clock(phrase)
    day = _day(rest, local_now)
    if day is None:
        return Unparseable(f"I could not read {text.strip()!r} as a time. " + HOW)
    explicit_day = bool(rest)
    if ambiguous_hour is not None:
        readings = [
            time(ambiguous_hour % 12, clock.minute),
            time(ambiguous_hour % 12 + 12, clock.minute),
        ]
        return _choose(text, [_at(day, r, zone) for r in readings], local_now, explicit_day)
    moment = _at(day, clock, zone)
    weekday = _ONLY_WEEKDAY.match(rest)
    if weekday and _WEEKDAYS.index(weekday.group("day")) == local_now.weekday():
        this_week = _at(local_now.date(), clock, zone)
        if this_week.at > local_now:
            week = _at(local_now.date() + timedelta(days=7), clock, zone)
            return Ambiguous(
                f"Today is {weekday.group('day').capitalize()}: today or next week?",
                (this_week, week),
            )
    if moment.at <= local_now:
        return _past(moment, zone, local_now)
    return moment


def _relative(phrase: str, now: datetime, zone: ZoneInfo) -> WhenResult | None:
    match = _RELATIVE.match(phrase)
    if match is None:
        return None
    raw = match.group("n")
    count = int(raw) if raw.isdigit() else 1
    if count == 0:
        return Unparseable("That is now. " + HOW)
    unit = match.group("unit").lower().rstrip("s") or "h"
    if unit in ("day", "week"):
        local = now.astimezone(zone)
        days = count * (7 if unit == "week" else 1)
        return _at(local.date() + timedelta(days=days), local.time(), zone)
    step = _UNITS.get(unit, timedelta(hours=1))
    at = (now.astimezone(UTC) + count * step).astimezone(zone)
    return Resolved(at, local_text(at))


def _clock(phrase: str) -> tuple[time, str, int | None]:
    """(clock time, the words left for the day, the hour when it could be am or pm)."""
    for word, value in _WORD_TIMES.items():
        if re.search(rf"\b(?:at\s+)?{word}\b", phrase):
            return value, _strip(re.sub(rf"\b(?:at\s+)?{word}\b", " ", phrase)), None
    match = _CLOCK_12.search(phrase)
    if match:
        hour, minute = int(match.group("h")), int(match.group("m") or 0)
        if 1 <= hour <= 12 and minute < 60:
            hour = hour % 12 + (12 if match.group("ampm").lower() == "p" else 0)
            return time(hour, minute), _cut(phrase, match), None
    match = _CLOCK_24.search(phrase)
    if match:
        hour, minute = int(match.group("h")), int(match.group("m"))
        if hour < 24 and minute < 60:
            return time(hour, minute), _cut(phrase, match), None
    match = _AT_HOUR.search(phrase) or _DAY_HOUR.search(phrase)
    if match:
        hour = int(match.group("h"))
        rest = _cut(phrase, match)
        if match.re is _DAY_HOUR:
            rest = match.group("day").lower()
        if 1 <= hour <= 12:
            return time(hour, 0), rest, hour
        if hour < 24:
            return time(hour, 0), rest, None
    if phrase == "tonight" or phrase.endswith(" tonight"):
        return time(20, 0), _strip(phrase.replace("tonight", "today")), None
    return DEFAULT_TIME, phrase, None


def _cut(phrase: str, match: re.Match[str]) -> str:
    return _strip(phrase[: match.start()] + " " + phrase[match.end() :])


def _strip(words: str) -> str:
    return " ".join(words.split()).strip(" ,").removesuffix(" at").removesuffix(" on").strip()


def _day(rest: str, local_now: datetime) -> date | None:
    """The calendar day the words name (today when there are none)."""
    if rest in ("", "today"):
        return local_now.date()
    if rest == "tomorrow":
        return local_now.date() + timedelta(days=1)
    import dateparser  # imported here: ~0.2 s to import, and only reminders need it

    settings: Any = {
        "RELATIVE_BASE": local_now.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "DATE_ORDER": "DMY",
    }
    parsed = dateparser.parse(rest, languages=["en"], settings=settings)
    return None if parsed is None else parsed.date()


def _at(day: date, clock: time, zone: ZoneInfo) -> Resolved:
    wall = datetime.combine(day, clock, tzinfo=zone)
    # A wall time skipped by a spring-forward change does not survive the round trip
    # through UTC; the round trip moves it forward by the gap (02:30 -> 03:30).
    at = wall.astimezone(UTC).astimezone(zone)
    return Resolved(at, local_text(at))


def _choose(
    text: str, readings: list[Resolved], local_now: datetime, explicit_day: bool
) -> WhenResult:
    future: list[Resolved] = []
    for reading in readings:
        if reading.at > local_now:
            future.append(reading)
        elif not explicit_day:  # "at 3" alone: the next 3 o'clock of that reading
            future.append(_next_day(reading, local_now.tzinfo))
    future.sort(key=lambda r: r.at)
    if not future:
        return Past(f"{text.strip()!r} has already passed.", None)
    if len(future) == 1:
        return future[0]
    shown = " or ".join(f"{r.at:%H:%M}" for r in future)
    return Ambiguous(f"{text.strip()!r}: {shown}?", tuple(future))


def _next_day(reading: Resolved, zone: Any) -> Resolved:
    local = reading.at.astimezone(zone)
    return _at(local.date() + timedelta(days=1), local.time(), zone)


def _past(moment: Resolved, zone: ZoneInfo, local_now: datetime) -> Past:
    local = moment.at.astimezone(zone)
    if local.date() < local_now.date():
        return Past(f"{moment.text} is in the past. " + HOW, None)
    suggestion = _at(local_now.date() + timedelta(days=1), local.time(), zone)
    return Past(f"{moment.text} has already passed: {suggestion.text} instead?", suggestion)


_REMIND = re.compile(r"^\s*(?:/remind(?:@\w+)?|remind\s+me)\b\s*", re.IGNORECASE)
MAX_WHEN_WORDS = 7


@dataclass(frozen=True, slots=True)
class ReminderRequest:
    """A one-off reminder: the words naming the time, what to remind of, and the time."""

    when_text: str
    what: str
    when: Resolved | Ambiguous | Past


def split_reminder(text: str, *, now: datetime, tz: str) -> ReminderRequest | Unparseable:
    """Split "remind me tomorrow 9am to call Bob" into when, what, and the resolved time.

    Accepts "/remind <when> <what>", "remind me <when> to <what>", "remind me to <what>
    <when>" and a bare "<when> <what>" ("in 20 minutes check the oven"). The time is the
    longest run of leading (or trailing) words that reads as one.
    """
    body = _REMIND.sub("", text, count=1).strip()
    words = body.split()
    if not words:
        return Unparseable("What, and when? Write e.g. /remind tomorrow 9am call Bob.")
    what_first = words[0].lower() == "to"
    if what_first:
        words = words[1:]
    spans = (
        [(len(words) - n, len(words)) for n in range(min(MAX_WHEN_WORDS, len(words) - 1), 0, -1)]
        if what_first
        else [(0, n) for n in range(min(MAX_WHEN_WORDS, len(words) - 1), 0, -1)]
    )
    for start, end in spans:
        when_text = " ".join(words[start:end])
        result = resolve_when(when_text, now=now, tz=tz)
        if isinstance(result, Unparseable):
            continue
        what_words = words[:start] + words[end:]
        if what_words and what_words[0].lower() == "to":
            what_words = what_words[1:]
        what = " ".join(what_words).strip(" ,.")
        if what:
            return ReminderRequest(when_text, what, result)
    return Unparseable(
        "I could not tell when: write e.g. /remind tomorrow 9am call Bob, or "
        "remind me on friday at 15:00 to send the proposal."
    )
