"""A feature's view of the scheduler: its own jobs only.

A feature schedules work that later comes back to it as an intent (a reminder, a
follow-up, the daily digest). It never holds the scheduler: this port adds, pauses,
resumes, cancels and lists jobs owned by that feature, and refuses to touch another's.
It may also see (never change) the jobs of any owner that will arrive as one of its
own intent kinds: a lead's follow-up is the leads feature's job, and the follow-ups
feature lists it in ``/followups``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from agents.errors import Refusal
from agents.scheduler import JobSpec, Schedules
from agents.schedules import JobLine, ScheduleError
from memory.jobs import Job, JobState


class FeatureSchedules:
    """The scheduler, limited to the jobs one feature owns."""

    def __init__(self, scheduler: Schedules, owner: str, kinds: Iterable[str] = ()) -> None:
        self._scheduler = scheduler
        self._owner = owner
        self._kinds = frozenset(kinds)

    @property
    def owner(self) -> str:
        return self._owner

    async def add(self, spec: JobSpec) -> Job:
        """Create or replace a job of this feature (the owner is set here)."""
        return await self._scheduler.add(replace(spec, owner=self._owner))

    async def get(self, job_id: str) -> Job | None:
        """This feature's job ``job_id``, or None."""
        job = await self._scheduler.get(job_id)
        return job if job is not None and job.owner == self._owner else None

    async def mine(self) -> list[Job]:
        """Every job of this feature."""
        return await self._scheduler.list_for(self._owner)

    async def incoming(self) -> list[Job]:
        """Active jobs of any owner whose runs arrive as this feature's intents (read only)."""
        return [
            job
            for job in await self._scheduler.list_all()
            if job.intent_kind in self._kinds and job.state is JobState.ACTIVE
        ]

    async def cancel(self, job_id: str, *, actor: str = "operator") -> Job:
        await self._own(job_id)
        return await self._scheduler.cancel(job_id, actor=actor)

    async def pause(self, job_id: str, *, actor: str = "operator") -> Job:
        await self._own(job_id)
        return await self._scheduler.pause(job_id, actor=actor)

    async def resume(self, job_id: str, *, actor: str = "operator") -> Job:
        await self._own(job_id)
        return await self._scheduler.resume(job_id, actor=actor)

    async def _own(self, job_id: str) -> None:
        if await self.get(job_id) is None:
            raise Refusal(f"There is no job {job_id!r} of {self._owner}.")


class JobControl:
    """The operator's control over every feature's jobs (``/schedule``): list them,
    pause, resume and cancel one. Unknown ids and finished jobs are refusals."""

    def __init__(
        self, scheduler: Schedules, overview: Callable[[], Awaitable[list[JobLine]]]
    ) -> None:
        self._scheduler = scheduler
        self._overview = overview

    async def overview(self) -> list[JobLine]:
        """Live jobs (not cancelled), with next and last run, by id."""
        return await self._overview()

    async def pause(self, job_id: str, *, actor: str) -> Job:
        return await self._move(self._scheduler.pause, job_id, actor)

    async def resume(self, job_id: str, *, actor: str) -> Job:
        return await self._move(self._scheduler.resume, job_id, actor)

    async def cancel(self, job_id: str, *, actor: str) -> Job:
        return await self._move(self._scheduler.cancel, job_id, actor)

    async def _move(self, move: Callable[..., Awaitable[Job]], job_id: str, actor: str) -> Job:
        try:
            return await move(job_id, actor=actor)
        except ScheduleError as exc:  # UnknownJob too: the message names what to do
            raise Refusal(str(exc)) from None
