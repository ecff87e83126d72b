"""The task state machine, as plain data and one check."""

from __future__ import annotations

from typing import Final

from agents.errors import InvalidTransition
from memory.tasks import TaskState

S = TaskState

ALLOWED: Final[dict[TaskState, frozenset[TaskState]]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    # running -> queued: a crash or a clean stop interrupted the work; it runs again.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.QUEUED, S.WAITING_APPROVAL, S.DEAD}),
    S.WAITING_APPROVAL: frozenset({S.QUEUED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.DEAD: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}

FINAL: Final[frozenset[TaskState]] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)


def check_transition(current: TaskState, new: TaskState) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> new`` is allowed."""
    if new not in ALLOWED[current]:
        raise InvalidTransition(f"a {current} task cannot become {new}")
