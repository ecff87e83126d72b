"""What the polling loop decides about raw updates, as plain functions over JSON.

Telegram (or a self-hosted Bot API server, or a proxy in between) can hand out an
update soloops cannot read: no ``update_id``, a string one, a message without
``date``, a sender without ``id``, a list where an object belongs. One such update
must not stop polling. :func:`update_problem` says what is wrong with one (None when
it is fine), :func:`confirmable_id` which id confirms it, and :func:`preview` what of
it goes into the ``update.malformed`` event.

    getUpdates -> [raw, ...] -> update_problem(raw) -- fine --> Update.de_json -> gateway
                                     |
                                     +-- malformed --> event, skip (offset past it)
"""

from __future__ import annotations

import json
from typing import Any

PREVIEW_CHARS = 300


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _user_problem(where: str, user: object) -> str | None:
    if not isinstance(user, dict):
        return f"{where}.from is not an object"
    if not _is_int(user.get("id")):
        return f"{where}.from has no integer id"
    return None


def _message_problem(where: str, message: object) -> str | None:
    if not isinstance(message, dict):
        return f"{where} is not an object"
    if not _is_int(message.get("date")):
        return f"{where} has no integer date"
    if not _is_int(message.get("message_id")):
        return f"{where} has no integer message_id"
    chat = message.get("chat")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")):
        return f"{where}.chat has no integer id"
    if "from" in message:
        problem = _user_problem(where, message["from"])
        if problem:
            return problem
    for field in ("text", "caption"):
        if field in message and not isinstance(message[field], str):
            return f"{where}.{field} is not a string"
    return None


def update_problem(raw: object) -> str | None:
    """Why ``raw`` is not an update soloops can take, or None if it can be taken.

    Checks what soloops reads (python-telegram-bot checks the rest when it parses).
    """
    if not isinstance(raw, dict):
        return f"the update is a {type(raw).__name__}, not an object"
    if not _is_int(raw.get("update_id")):
        return "the update has no integer update_id"
    if "message" in raw:
        problem = _message_problem("message", raw["message"])
        if problem:
            return problem
    if "callback_query" in raw:
        query = raw["callback_query"]
        if not isinstance(query, dict):
            return "callback_query is not an object"
        if not isinstance(query.get("id"), str) or not query["id"]:
            return "callback_query has no id"
        problem = _user_problem("callback_query", query.get("from"))
        if problem:
            return problem
        if "data" in query and not isinstance(query["data"], str):
            return "callback_query.data is not a string"
        if "message" in query:
            inner = query["message"]
            if not isinstance(inner, dict):
                return "callback_query.message is not an object"
            chat = inner.get("chat")
            if not isinstance(chat, dict) or not _is_int(chat.get("id")):
                return "callback_query.message.chat has no integer id"
    return None


def confirmable_id(raw: object) -> int | None:
    """The update id that confirms ``raw``, even a malformed one, when it has one.

    A string of digits counts (the update is still skipped as malformed, but the
    offset can move past it); anything else cannot be confirmed on its own: a later
    update's confirmation drops it.
    """
    if not isinstance(raw, dict):
        return None
    value = raw.get("update_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def preview(raw: Any, limit: int = PREVIEW_CHARS) -> str:
    """``raw`` as compact JSON cut to ``limit`` characters (for the event log)."""
    try:
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):  # a cycle, or something json cannot take
        text = repr(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"
