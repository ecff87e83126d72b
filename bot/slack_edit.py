"""Edit before approve in Slack: the card's Edit button, its modal, and the submission.

    Edit (block_actions, action_id soloops.edit, value CODE)
        operator? -> the card's editable text (BoardReader.edit_form) -> views.open(modal)
    Save (view_submission, callback_id soloops.edit)
        operator, text, card still waiting? else the modal shows why (response_action errors)
        -> Inbound "/edit CODE text" through the gateway (stored, task queued) -> ack

The submission is the same message as a typed ``/edit CODE text``: the gateway stores
it before the ack (with its task, in one transaction), and the ops agent applies it
(the old card voided, a new card bound to the new fingerprint). The checks before
that only spare the operator a round trip: a card decided between the check and the
task is still refused by the desk, in the card's conversation. A stranger's
submission is stored and refused like any stranger's message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from agents.board import BoardReader, EditForm
from bot.gateway import Handled, Outcome
from bot.inbound import Inbound
from bot.slack_inbound import BlockActions, ViewSubmission, edit_inbound
from bot.slack_views import (
    EDIT_BLOCK,
    EDIT_INPUT,
    edit_metadata,
    edit_modal,
    read_metadata,
    text_problem,
    too_long_to_edit_here,
)
from memory.events import EventLog

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[None]]
Record = Callable[[Inbound], Awaitable[Handled | None]]
Tell = Callable[[BlockActions, str], Awaitable[None]]


def not_allowed(user_id: str) -> str:
    """What a non-operator is told when they press Edit or submit the form."""
    return (
        "Not allowed: only the soloops operator can edit cards. The owner can add your "
        f"Slack user id ({user_id}) to SOLOOPS_SLACK__OPERATORS."
    )


class SlackEdit:
    """The Edit button's and the edit modal's listeners (bolt passes arguments by name)."""

    def __init__(
        self,
        client: AsyncWebClient,
        operators: frozenset[str],
        reader: Callable[[], BoardReader],
        events: Callable[[], EventLog],
        record: Record,
        tell: Tell,
    ) -> None:
        self._client = client
        self._operators = operators
        self._reader = reader
        self._events = events
        self._record = record
        self._tell = tell

    async def on_press(self, ack: Ack, body: dict[str, Any]) -> None:
        """The Edit button: open the modal with the card's current text."""
        await ack()
        try:
            payload = BlockActions.model_validate(body)
        except ValidationError:
            log.warning("a malformed Slack Edit press was ignored")
            return
        user = payload.user.id
        code = (payload.actions[0].value or "").strip()[:16]
        actor = f"slack:{user}"
        if user not in self._operators:
            await self._refused(actor, code, "not_operator")
            await self._tell(payload, not_allowed(user))
            return
        found = await self._reader().edit_form(code)
        problem = found if isinstance(found, str) else too_long_to_edit_here(found)
        if problem is not None or not isinstance(found, EditForm):
            await self._refused(actor, code, problem or "unknown")
            await self._tell(payload, problem or "This card cannot be edited.")
            return
        if payload.trigger_id is None:
            await self._tell(payload, f"Type /edit {found.code} <new text> to edit this card.")
            return
        channel, thread = _where(payload)
        view = edit_modal(found, edit_metadata(found.code, channel, thread))
        try:
            await self._client.views_open(trigger_id=payload.trigger_id, view=view)
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            error: object = exc
            if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
                error = exc.response.get("error")
            log.warning("Slack would not open the edit form (%s)", error)
            await self._tell(
                payload,
                f"Slack would not open the edit form ({error}). "
                f"Type /edit {found.code} <new text> instead.",
            )

    async def on_submit(self, ack: Ack, body: dict[str, Any]) -> None:
        """The modal's Save: check, store as ``/edit CODE text``, then close the modal."""
        try:
            submission = ViewSubmission.model_validate(body)
        except ValidationError:
            log.warning("a malformed Slack edit submission was ignored")
            await ack()
            return
        user = submission.user.id
        text = submission.value(EDIT_BLOCK, EDIT_INPUT)
        where = read_metadata(submission.view.private_metadata)
        if where is None:
            await ack(
                response_action="errors",
                errors={EDIT_BLOCK: "This form lost its card: close it and type /edit CODE text."},
            )
            return
        code, chat, thread = where
        now = datetime.now(UTC)
        if user not in self._operators:
            # Stored and refused by the gateway, like any message from a stranger.
            await self._record(edit_inbound(submission, code, chat, thread, text or "-", now))
            await ack(response_action="errors", errors={EDIT_BLOCK: not_allowed(user)})
            return
        problem = text_problem(text)
        if problem is None:
            found = await self._reader().edit_form(code)
            problem = found if isinstance(found, str) else None
        if problem is not None or text is None:
            await self._refused(f"slack:{user}", code, problem or "no text")
            await ack(response_action="errors", errors={EDIT_BLOCK: problem or "No text."})
            return
        handled = await self._record(edit_inbound(submission, code, chat, thread, text, now))
        if handled is not None and handled.outcome is Outcome.REFUSED:  # operators changed
            await ack(response_action="errors", errors={EDIT_BLOCK: not_allowed(user)})
            return
        await ack()  # closes the modal; the new card follows in the card's conversation

    async def _refused(self, actor: str, code: str, reason: str) -> None:
        await self._events().record(
            "slack.edit_refused",
            actor=actor,
            subject=f"approval-code:{code}",
            payload={"reason": reason[:200]},
        )


def _where(payload: BlockActions) -> tuple[str, str | None]:
    """Where the edit's answer goes: the card's channel and thread, or (pressed on the
    Home tab) the operator's DM with the app."""
    if payload.channel is None:
        return payload.user.id, None
    thread = (payload.message.thread_ts if payload.message else None) or payload.container.thread_ts
    return payload.channel.id, thread
