"""Slack views as pure functions: the App Home tab and the edit-before-approve modal.

The Home tab (``views.publish``) is the operator's dashboard: the same read as
``/today`` (:class:`agents.board.Board`), with each pending card shown as it is in
chat: its text and its buttons, whose ``action_id`` and ``value`` are the card's own,
so a press on the Home tab takes the same path as a press on the message. Anyone else
who opens the tab sees :func:`stranger_home_view`, one line saying whose bot this is.

The edit modal (``views.open``) holds the card's editable text in one multiline input;
its submission becomes ``/edit CODE new text`` (see :mod:`bot.slack_edit`).
"""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from agents.board import Board, EditForm
from agents.replies import Reply
from bot.slack_blocks import BUTTONS_BLOCK_ID, SECTION_MAX, Block, escape, render, section

HOME_MAX_BLOCKS = 100  # Slack's limit on blocks in a Home view
EDIT_CALLBACK = "soloops.edit"  # the modal's callback_id (app.view listens for it)
EDIT_BLOCK = "soloops.edit.text"
EDIT_INPUT = "text"
MODAL_TEXT_MAX = 3000  # a plain_text_input holds at most 3,000 characters
METADATA_MAX = 3000  # Slack's limit on private_metadata

View = dict[str, Any]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _short(text: str, limit: int = SECTION_MAX) -> str:
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    return escape(text[: limit // 5]) + "…"


def card_blocks(card: Reply, index: int) -> list[Block]:
    """One pending card as Home blocks: its text (one section) and its buttons; the
    buttons' block id is unique in the view (Slack refuses duplicates)."""
    _, rendered = render(card.model_copy(update={"options": ()}))
    buttons = [b for b in rendered if b.get("block_id") == BUTTONS_BLOCK_ID]
    blocks = [section(_short(card.text))]
    for block in buttons:
        blocks.append({**block, "block_id": f"{BUTTONS_BLOCK_ID}.{index}"})
    return blocks


def _today_parts(board: Board) -> list[tuple[str, list[str]]]:
    """``/today``'s sections (title, lines), without its title line."""
    parts = board.today.text.split("\n\n")[1:]
    found = []
    for part in parts:
        title, *lines = part.split("\n")
        found.append((title, lines))
    return found


def _local(board: Board) -> str:
    moment = board.now.astimezone(ZoneInfo(board.timezone))
    return f"{moment:%a %d %b, %H:%M} {moment.tzname()}"


def home_view(board: Board, note: str | None = None) -> View:
    """The operator's Home tab for ``board``; ``note`` is a line on top (what became of
    their last press on this tab)."""
    blocks: list[Block] = [
        {"type": "header", "text": _plain("Needs you now")},
        _context(f"Updated {escape(_local(board))} · the same as /today"),
    ]
    if note:
        blocks.append(section(f":information_source: Your last press: {_short(note, 500)}"))
    if board.cards:
        total = len(board.cards) + board.more_cards
        blocks += [{"type": "divider"}, section(f"*Decide ({total})*")]
        for index, card in enumerate(board.cards):
            blocks += card_blocks(card, index)
        if board.more_cards:
            blocks.append(_context(f"… and {board.more_cards} more: /pending shows them all"))
    parts = _today_parts(board)
    if parts and not board.today.all_clear:
        for title, lines in parts:
            blocks += [
                {"type": "divider"},
                section(f"*{escape(title)}*\n{_short(chr(10).join(lines), SECTION_MAX - 200)}"),
            ]
    elif not board.cards:
        blocks.append(section(escape(board.today.text.split("\n\n")[-1])))
    blocks += [{"type": "divider"}, section(last_digest_line(board))]
    if len(blocks) > HOME_MAX_BLOCKS:
        blocks = [*blocks[: HOME_MAX_BLOCKS - 1], _context("… more than fits here: /today")]
    return {"type": "home", "blocks": blocks}


def last_digest_line(board: Board) -> str:
    """When the last digest went out and what it spoke of."""
    last = board.last_digest
    if last is None:
        return "*Last digest*: none in the last day. /digest sends one now."
    zone = ZoneInfo(board.timezone)
    at = last.at.astimezone(zone)
    about = "all clear" if last.all_clear else ", ".join(last.sections) or "nothing to report"
    late = " (late)" if last.late else ""
    return f"*Last digest*{late}: {at:%a %d %b %H:%M} {at.tzname()}: {escape(about)}"


def stranger_home_view() -> View:
    """The Home tab of anyone who is not the operator: whose bot this is, nothing else."""
    return {
        "type": "home",
        "blocks": [
            section(
                "soloops works for its operator only: approvals, failures and the digest "
                "show here for them."
            )
        ],
    }


def edit_metadata(code: str, channel: str, thread: str | None) -> str:
    """What the modal carries back on submit: the card and where to answer."""
    return json.dumps({"code": code, "channel": channel, "thread": thread})[:METADATA_MAX]


def read_metadata(text: str) -> tuple[str, str, str | None] | None:
    """(code, channel, thread) from a modal's ``private_metadata``; None if unreadable."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    code, channel, thread = data.get("code"), data.get("channel"), data.get("thread")
    if not isinstance(code, str) or not isinstance(channel, str) or not code or not channel:
        return None
    return code, channel, thread if isinstance(thread, str) and thread else None


def edit_modal(form: EditForm, metadata: str) -> View:
    """The modal that edits a card's text before it is approved."""
    summary = form.summary.split("\n", 1)[0]
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "private_metadata": metadata,
        "title": _plain("Edit before approving"),
        "submit": _plain("Save as a new card"),
        "close": _plain("Cancel"),
        "blocks": [
            section(f"Card *{escape(form.code)}*: {_short(summary, 500)}"),
            {
                "type": "input",
                "block_id": EDIT_BLOCK,
                "label": _plain(f"New {form.param}"[:2000]),
                "element": {
                    "type": "plain_text_input",
                    "action_id": EDIT_INPUT,
                    "multiline": True,
                    "initial_value": form.text,
                    "max_length": MODAL_TEXT_MAX,
                },
            },
            _context("Saving voids this card and shows a new one, to approve or edit again."),
        ],
    }


def text_problem(text: str | None) -> str | None:
    """Why a submitted text cannot replace the card's (shown under the field), or None."""
    if text is None or not text.strip():
        return "Write the new text: it cannot be empty (Cancel keeps the card as it is)."
    if len(text) > MODAL_TEXT_MAX:
        return f"The text is {len(text):,} characters; at most {MODAL_TEXT_MAX:,} fit here."
    return None


def too_long_to_edit_here(form: EditForm) -> str | None:
    """Why the modal cannot hold ``form``'s text, with what to type instead; or None."""
    if len(form.text) <= MODAL_TEXT_MAX:
        return None
    return (
        f"{form.code}: the text is {len(form.text):,} characters, more than Slack's form "
        f"holds ({MODAL_TEXT_MAX:,}). Type /edit {form.code} <new text> instead."
    )
