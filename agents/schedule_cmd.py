"""``/schedule``: the operator's view of every scheduled job, and control over it.

``/schedule`` lists live jobs with their next run in local time and UTC, their last
run (marked when it was late) and recent skips; ``/schedule pause|resume|cancel <id>``
acts on any feature's job. The agent holds only the :class:`JobControl` port.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from agents.base import Agent, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.ports import Ports
from agents.replies import Reply
from agents.schedule_port import JobControl
from agents.schedules import render_jobs
from memory.jobs import Job

NAME = "schedule"
VERBS = ("pause", "resume", "cancel")
USAGE = "schedule [pause|resume|cancel <id>]"


class ScheduleIntent(Intent):
    """List the jobs, or pause, resume or cancel one."""

    kind: Literal["schedule"] = "schedule"
    verb: Literal["list", "pause", "resume", "cancel"] = "list"
    job_id: str | None = Field(default=None, min_length=1, max_length=128)


def schedule_args(tokens: list[str]) -> dict[str, Any]:
    """``[]`` lists; ``[verb, id]`` pauses, resumes or cancels (raises ValueError else)."""
    if not tokens:
        return {}
    verb = tokens[0].lower()
    if verb not in VERBS:
        raise ValueError(f"{tokens[0]!r} is not pause, resume or cancel")
    if len(tokens) != 2:
        raise ValueError(f"{verb} takes one job id (/schedule lists them)")
    return {"verb": verb, "job_id": tokens[1]}


class ScheduleAgent(Agent):
    """Shows the scheduler's jobs and moves them for the operator."""

    name = NAME

    def __init__(self, jobs: JobControl) -> None:
        self._jobs = jobs

    async def handle(self, intent: Intent, ctx: TaskContext) -> Sequence[Reply]:
        assert isinstance(intent, ScheduleIntent)
        actor = intent.conversation.actor
        if intent.verb == "list" or intent.job_id is None:
            listing = render_jobs(await self._jobs.overview())
            return [Reply(text=f"{listing}\n\nChange one: /{USAGE}")]
        match intent.verb:
            case "pause":
                job = await self._jobs.pause(intent.job_id, actor=actor)
                said = f"{job.id} is paused; /schedule resume {job.id} starts it again."
            case "resume":
                job = await self._jobs.resume(intent.job_id, actor=actor)
                said = f"{job.id} is active again; next run {_next(job)}."
            case _:
                job = await self._jobs.cancel(intent.job_id, actor=actor)
                said = f"{job.id} is cancelled."
        return [Reply(text=said)]


def _next(job: Job) -> str:
    if job.next_run_at is None:
        return "none"
    local = job.next_run_at.astimezone(ZoneInfo(job.timezone))
    return f"{local:%Y-%m-%d %H:%M %Z} ({job.next_run_at.astimezone(UTC):%H:%M} UTC)"


def build(ports: Ports) -> ScheduleAgent:
    """The schedule agent over the job control port."""
    return ScheduleAgent(ports.require_jobs())


FEATURE = Feature(
    name=NAME,
    build=build,
    intents=(ScheduleIntent,),
    commands=(
        CommandSpec(
            "schedule",
            "schedule",
            USAGE,
            "scheduled jobs (next run local and UTC); pause, resume or cancel one",
            "/schedule pause digest.daily@console:local",
            "tokens",
            schedule_args,
        ),
    ),
    control_kinds=frozenset({"schedule"}),
    scheduler_controls=True,
)
