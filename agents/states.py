"""The state machines of tasks, actions and approvals, as plain data and one check."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from agents.errors import InvalidTransition
from memory.actions import ActionState
from memory.approvals import ApprovalState
from memory.tasks import TaskState

S = TaskState
A = ActionState
P = ApprovalState

ALLOWED: Final[dict[TaskState, frozenset[TaskState]]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    # running -> queued: a crash or a clean stop interrupted the work, a retry waits, or
    # the agent is held (paused, degraded, over budget); it runs again later.
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.REFUSED, S.QUEUED, S.WAITING_APPROVAL, S.DEAD}),
    S.WAITING_APPROVAL: frozenset({S.QUEUED, S.CANCELLED, S.DEAD}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REFUSED: frozenset(),
    S.DEAD: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLED: frozenset(),
}

ACTION_ALLOWED: Final[dict[ActionState, frozenset[ActionState]]] = {
    A.PENDING_APPROVAL: frozenset({A.APPROVED, A.REJECTED}),
    A.APPROVED: frozenset({A.IN_FLIGHT}),
    # in_flight -> approved: a transient failure (retried later) or a lookup that says
    # the far side never saw it.
    A.IN_FLIGHT: frozenset({A.SUCCEEDED, A.APPROVED, A.FAILED, A.UNCERTAIN}),
    A.UNCERTAIN: frozenset({A.SUCCEEDED, A.APPROVED, A.FAILED}),
    A.FAILED: frozenset({A.APPROVED, A.DISCARDED}),
    A.SUCCEEDED: frozenset(),
    A.REJECTED: frozenset(),
    A.DISCARDED: frozenset(),
}

APPROVAL_ALLOWED: Final[dict[ApprovalState, frozenset[ApprovalState]]] = {
    P.PENDING: frozenset({P.APPROVED, P.REJECTED, P.EXPIRED, P.VOIDED}),
    # A decided approval is voided when the action it covered changed.
    P.APPROVED: frozenset({P.VOIDED}),
    P.REJECTED: frozenset({P.VOIDED}),
    P.EXPIRED: frozenset({P.VOIDED}),
    P.VOIDED: frozenset(),
}

FINAL: Final[frozenset[TaskState]] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)

TABLES: Final[dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]]] = {
    TaskState: ALLOWED,  # type: ignore[dict-item]  # each table is keyed by its own enum
    ActionState: ACTION_ALLOWED,  # type: ignore[dict-item]  # as above
    ApprovalState: APPROVAL_ALLOWED,  # type: ignore[dict-item]  # as above
}


def check_transition(current: StrEnum, new: StrEnum) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> new`` is in its state table."""
    table = TABLES[type(current)]
    if type(new) is not type(current) or new not in table[current]:
        noun = {TaskState: "task", ActionState: "action", ApprovalState: "approval"}[type(current)]
        raise InvalidTransition(f"a {current} {noun} cannot become {new}")
