from __future__ import annotations

import pytest

from agents.errors import InvalidTransition
from agents.states import ALLOWED, FINAL, check_transition
from memory.tasks import TaskState as S


def test_every_state_has_rules() -> None:
    assert set(ALLOWED) == set(S)
    assert {S.SUCCEEDED, S.FAILED, S.REFUSED, S.CANCELLED} == FINAL


@pytest.mark.parametrize(
    ("current", "new"),
    [(S.QUEUED, S.RUNNING), (S.RUNNING, S.SUCCEEDED), (S.RUNNING, S.FAILED), (S.RUNNING, S.QUEUED)],
)
def test_allowed(current: S, new: S) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(S.SUCCEEDED, S.RUNNING), (S.QUEUED, S.SUCCEEDED), (S.FAILED, S.QUEUED), (S.QUEUED, S.QUEUED)],
)
def test_refused(current: S, new: S) -> None:
    with pytest.raises(InvalidTransition, match=f"a {current} task cannot become {new}"):
        check_transition(current, new)
