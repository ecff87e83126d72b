"""Slack rendering: replies as Block Kit, as pure functions.

A :class:`~agents.replies.Reply` becomes mrkdwn ``section`` blocks (text escaped, so
nothing an agent or user wrote turns into a mention or a link) and, when it has
buttons, one ``actions`` block. Each button's ``value`` is the reply's opaque button
data and its ``action_id`` starts with :data:`ACTION_PREFIX`, which is how clicks are
routed back. A decided card is the same reply without buttons: ``chat.update`` with
its blocks removes them.

A pending card whose action has text to edit (``Reply.edit_code``) gets one more
button, Edit (:data:`EDIT_ACTION`, value the card's code): it opens a form, never
decides (see :mod:`bot.slack_views`).
"""

from __future__ import annotations

from typing import Any

from agents.replies import Button, Reply, body_text

ACTION_PREFIX = "soloops.button."
EDIT_ACTION = "soloops.edit"  # not under ACTION_PREFIX: pressing it decides nothing
BUTTONS_BLOCK_ID = "soloops.buttons"
SECTION_MAX = 3000  # Slack's limit on a section's text
MAX_BLOCKS = 50  # Slack's limit on blocks in one message
FALLBACK_MAX = 3000  # notification text; the blocks carry the whole reply
ERROR_MARK = ":warning: "

Block = dict[str, Any]


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chunks(text: str, limit: int = SECTION_MAX) -> list[str]:
    """Split ``text`` into pieces whose *escaped* form fits ``limit``, at line ends if possible.

    Splitting before escaping keeps entities like ``&amp;`` whole.
    """
    pieces: list[str] = []
    current = ""
    size = 0
    for line in text.splitlines(keepends=True):
        line_size = len(escape(line))
        if size + line_size <= limit:
            current += line
            size += line_size
            continue
        if current:
            pieces.append(current)
            current, size = "", 0
        for char in line:  # a line longer than the limit: cut it by characters
            char_size = len(escape(char))
            if size + char_size > limit:
                pieces.append(current)
                current, size = "", 0
            current += char
            size += char_size
    if current or not pieces:
        pieces.append(current)
    return [piece.rstrip("\n") or " " for piece in pieces]


def section(mrkdwn: str) -> Block:
    """One mrkdwn section (the text must already be escaped)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def button(index: int, item: Button) -> Block:
    """One button element carrying the opaque button data."""
    element: Block = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{index}",
        "text": {"type": "plain_text", "text": item.label, "emoji": True},
        "value": item.data,
    }
    if item.style != "default":
        element["style"] = item.style
    return element


def edit_button(code: str) -> Block:
    """The Edit button of a card whose action has text to edit."""
    return {
        "type": "button",
        "action_id": EDIT_ACTION,
        "text": {"type": "plain_text", "text": "Edit", "emoji": True},
        "value": code,
    }


def render(reply: Reply) -> tuple[str, list[Block]]:
    """The notification text and the blocks of one reply."""
    text = ("" if reply.tone == "info" else ERROR_MARK) + body_text(reply)
    pieces = [escape(piece) for piece in chunks(text)]
    room = MAX_BLOCKS - (1 if reply.buttons else 0)
    if len(pieces) > room:
        pieces = [*pieces[: room - 1], "_… the rest is too long for one Slack message._"]
    blocks = [section(piece) for piece in pieces]
    if reply.buttons:
        elements = [button(i, item) for i, item in enumerate(reply.buttons)]
        if reply.edit_code:
            elements.append(edit_button(reply.edit_code))
        blocks.append({"type": "actions", "block_id": BUTTONS_BLOCK_ID, "elements": elements})
    fallback = escape(text)
    if len(fallback) > FALLBACK_MAX:
        fallback = escape(text[: FALLBACK_MAX // 5]) + "…"
    return fallback, blocks


def thread_opener(user_id: str, command_text: str) -> str:
    """The channel message a slash command's thread hangs from: who asked, and what."""
    asked = command_text.removeprefix("/")
    if len(asked) > 500:
        asked = asked[:499] + "…"
    return f"<@{escape(user_id)}> asked: /ops {escape(asked)}"
