"""Telegram's side of the data, as pure functions: updates in, HTML messages out.

No I/O here: :mod:`bot.telegram` drives these. Telegram measures text in UTF-16 code
units, allows 4096 of them per message after entity parsing, and takes HTML with
``<``, ``>`` and ``&`` escaped.
"""

from __future__ import annotations

import html
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update

from agents.replies import Button, Reply, body_text
from agents.voice_port import AudioRef
from bot.inbound import Inbound

PLATFORM = "telegram"
MESSAGE_LIMIT = 4096  # UTF-16 code units of visible text per message
CAPTION_LIMIT = 1024  # the same, for a photo's or a document's caption
ERROR_MARK = "⚠️ "
USER_NAME_MAX = 256
# A forum's General topic. Its messages carry no topic id (a reply there carries the
# replied-to message's id, not a topic's); sendMessage with message_thread_id=1 answers
# "Bad Request: message thread not found", while sendChatAction takes it.
GENERAL_TOPIC = 1


def message_thread(thread_id: str | None) -> int | None:
    """The ``message_thread_id`` a message sent to ``thread_id`` carries: none for the
    General topic (Telegram refuses its id there), nor for a chat without topics."""
    thread = int(thread_id) if thread_id else None
    return None if thread == GENERAL_TOPIC else thread


def action_thread(thread_id: str | None) -> int | None:
    """The ``message_thread_id`` of a chat action (typing…): the General topic's too."""
    return int(thread_id) if thread_id else None


def topic_of(message: Message) -> int | None:
    """The forum topic a message is in: its topic's id, :data:`GENERAL_TOPIC` in a forum's
    General topic, None outside a forum (a reply thread of a plain group is no topic)."""
    if message.is_topic_message and message.message_thread_id is not None:
        return message.message_thread_id
    return GENERAL_TOPIC if message.chat.is_forum else None


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (characters outside the BMP count twice)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-16 units, on line boundaries.

    A single line longer than the limit is cut inside the line (never inside a
    surrogate pair). Pieces that are only whitespace are dropped: Telegram refuses them.
    """
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        for part in _cut_line(line, limit):
            extra = utf16_len(part) + (1 if current else 0)
            if current and size + extra > limit:
                pieces.append("\n".join(current))
                current, size = [], 0
                extra = utf16_len(part)
            current.append(part)
            size += extra
    pieces.append("\n".join(current))
    return [piece for piece in pieces if piece.strip()] or [text[:1] or " "]


def _cut_line(line: str, limit: int) -> list[str]:
    if utf16_len(line) <= limit:
        return [line]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for ch in line:
        width = 2 if ord(ch) > 0xFFFF else 1
        if size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(ch)
        size += width
    parts.append("".join(current))
    return parts


def render(reply: Reply, *, headline: bool = False) -> list[str]:
    """The HTML messages for one reply, each within Telegram's limit.

    Agents write plain text, so everything is escaped; ``headline`` shows the first
    line in bold (approval cards and their decided versions). Errors get a warning mark.
    """
    text = (ERROR_MARK if reply.tone == "error" else "") + body_text(reply)
    chunks = split_text(text)
    rendered = [html.escape(chunk, quote=False) for chunk in chunks]
    if headline:
        first, sep, rest = rendered[0].partition("\n")
        rendered[0] = f"<b>{first}</b>{sep}{rest}"
    return rendered


def keyboard(buttons: tuple[Button, ...]) -> InlineKeyboardMarkup | None:
    """One row of inline buttons carrying each button's opaque data, or None."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(button.label, callback_data=button.data) for button in buttons]]
    )


def inbound_id(update_id: int, message_id: int | None = None) -> str:
    """The gateway's dedupe id: the update id, plus the chat message id to reply to.

    Telegram may deliver one update twice but never reuses an update id, so the id is
    a function of the update alone and the gateway's (platform, id) uniqueness dedupes
    by update id.
    """
    return f"{update_id}" if message_id is None else f"{update_id}:{message_id}"


def reply_target(inbound_message_id: str | None) -> int | None:
    """The chat message id to reply to, from an :func:`inbound_id`."""
    if not inbound_message_id or ":" not in inbound_message_id:
        return None
    tail = inbound_message_id.rsplit(":", 1)[1]
    return int(tail) if tail.isdigit() else None


def message_ref(chat_id: int, message_id: int) -> str:
    """How the outbox remembers a sent message, for editing it later."""
    return f"{chat_id}:{message_id}"


def parse_ref(ref: str) -> tuple[int, int] | None:
    """``(chat_id, message_id)`` of a :func:`message_ref`, or None if it is not one."""
    chat, _, message = ref.rpartition(":")
    try:
        return int(chat), int(message)
    except ValueError:
        return None


def addressed_elsewhere(text: str, bot_username: str | None) -> bool:
    """Whether a command names another bot (``/help@otherbot`` in a group)."""
    if not text.startswith("/"):
        return False
    command = text.split(maxsplit=1)[0]
    _, at, name = command.partition("@")
    return bool(at) and bot_username is not None and name.lower() != bot_username.lower()


def to_inbound(update: Update, bot_username: str | None, now: datetime) -> Inbound | None:
    """The gateway's view of one update, or None when it is not for soloops.

    Messages (text, or a caption) and button presses map; edits, channel posts,
    messages from no user and commands addressed to another bot do not.
    """
    query = update.callback_query
    if query is not None:
        if query.data is None:
            return None
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        return Inbound(
            platform=PLATFORM,
            message_id=inbound_id(update.update_id),
            chat_id=str(chat_id),
            user_id=str(query.from_user.id),
            user_name=_name(query.from_user.full_name, query.from_user.username),
            callback_data=query.data[:256],
            received_at=now,
        )
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    text = message.text or message.caption or ""
    if addressed_elsewhere(text, bot_username):
        return None
    thread = topic_of(message)
    return Inbound(
        audio=audio_ref(message),
        platform=PLATFORM,
        message_id=inbound_id(update.update_id, message.message_id),
        chat_id=str(message.chat.id),
        user_id=str(message.from_user.id),
        thread_id=str(thread) if thread is not None else None,
        user_name=_name(message.from_user.full_name, message.from_user.username),
        text=text,
        received_at=now,
    )


def audio_ref(message: Message) -> AudioRef | None:
    """A voice note's (or an audio file's) reference; None for other messages."""
    if message.voice is not None:
        voice = message.voice
        mime = voice.mime_type or "audio/ogg"
        return AudioRef(
            platform=PLATFORM,
            file_id=voice.file_id,
            filename="voice.ogg",
            mime=mime,
        )
    if message.audio is not None:
        audio = message.audio
        return AudioRef(
            platform=PLATFORM,
            file_id=audio.file_id,
            filename=(audio.file_name or "audio.mp3")[:256],
            mime=audio.mime_type or "audio/mpeg",
            kind="audio",
        )
    return None


def _name(full_name: str, username: str | None) -> str:
    shown = f"{full_name} (@{username})" if username else full_name
    return shown[:USER_NAME_MAX]


def refusal(user_id: str, operators_configured: bool) -> str:
    """The one short answer a non-operator gets."""
    if not operators_configured:
        return (
            f"Your Telegram user id is {user_id}. This soloops has no operator yet: set "
            f"SOLOOPS_TELEGRAM__OPERATORS=[{user_id}] and restart it."
        )
    return "Sorry, this bot only works for its operator."
