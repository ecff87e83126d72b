"""A loopback emulator of the Telegram Bot API, for the real python-telegram-bot to talk to.

It speaks what PTB sends (``POST /bot<token>/<method>`` with form-encoded bodies whose
non-string fields are JSON) and answers as Telegram does (``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code": N, "description": ...}``). Tests inject updates
(messages, button presses), read what the bot sent, edited and answered, and make the
next calls of a method fail with 429 ``retry_after``, a 5xx, a 400 or a hang.
:meth:`TelegramEmulator.push_raw` serves any JSON value as an update (no
``update_id``, a string one, a list...), as a broken Bot API server or proxy might.

In webhook mode the emulator plays Telegram's side too: :meth:`TelegramEmulator.post_webhook`
POSTs an update to the URL the bot set with ``setWebhook``, with its secret token, as
JSON, and returns the HTTP status (Telegram redelivers anything not answered 2xx).

Forum supergroups (:meth:`TelegramEmulator.create_forum`, :meth:`TelegramEmulator.create_topic`)
behave as Telegram's: a message in a topic carries ``message_thread_id`` and
``is_topic_message``; one in the General topic carries neither (a reply there carries the
replied-to message's id as ``message_thread_id``, without ``is_topic_message``); sending
with the General topic's id (1) or an unknown thread answers 400 "message thread not
found", while ``sendChatAction`` takes the General topic's id. Chat actions are kept in
:attr:`TelegramEmulator.chat_actions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

BOT_ID = 777000111
BOT_USERNAME = "soloops_test_bot"
CAPTION_LIMIT = 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
GENERAL_TOPIC = 1  # a forum's General topic: never a message_thread_id to send to
THREAD_NOT_FOUND = "Bad Request: message thread not found"

JSON = dict[str, Any]
RAW = "__raw__"  # key of a queued raw update: served as is, confirmed by its queue id


@dataclass
class Failure:
    """What the next call of one method does instead of succeeding."""

    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    hang_s: float | None = None  # sleep this long before answering normally


@dataclass
class Call:
    """One Bot API request as the emulator received it."""

    method: str
    params: JSON


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded (multipart), as received."""

    filename: str
    content_type: str
    content: bytes


def _upload(field: web.FileField) -> Upload:
    return Upload(field.filename, field.content_type, field.file.read())


@dataclass
class StoredMessage:
    """A message in a chat, as the bot sent or edited it."""

    chat_id: int
    message_id: int
    text: str
    parse_mode: str | None = None
    reply_to: int | None = None
    thread_id: int | None = None
    reply_markup: JSON | None = None
    edits: int = 0
    photo: Upload | None = None
    document: Upload | None = None

    @property
    def buttons(self) -> list[JSON]:
        """Every inline button, row by row."""
        if not self.reply_markup:
            return []
        return [b for row in self.reply_markup.get("inline_keyboard", []) for b in row]


@dataclass
class TelegramEmulator:
    """State and HTTP server of one emulated bot."""

    token: str = "123456:TEST-token-abcdefghijklmnop"
    updates: list[JSON] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], StoredMessage] = field(default_factory=dict)
    callback_answers: list[JSON] = field(default_factory=list)
    # The command menu the bot set last (setMyCommands): [{"command", "description"}].
    my_commands: list[JSON] = field(default_factory=list)
    webhook: JSON | None = None
    unknown_chats: set[int] = field(default_factory=set)
    # Forum supergroups: chat id -> {topic id: name} (General, id 1, is implied).
    forums: dict[int, dict[int, str]] = field(default_factory=dict)
    # sendChatAction calls: {"chat_id", "action", "thread_id" (None when not given)}.
    chat_actions: list[JSON] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._update_ids = itertools.count(1000)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self._forced: list[JSON] = []
        self._handed_out: dict[int, int] = {}
        self.files: dict[str, bytes] = {}  # file_id -> content (voice notes)
        self.file_downloads: list[str] = []

    # -- server --------------------------------------------------------------

    async def start(self) -> None:
        """Serve on an ephemeral port of 127.0.0.1."""
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop serving (open long polls are cut)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What to give PTB as ``base_url`` (the token is appended)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # -- test controls -------------------------------------------------------

    def fail_next(self, method: str, *failures: Failure) -> None:
        """Make the next ``len(failures)`` calls of ``method`` fail, in order.

        A ``Failure(200)`` lets its call through, so a later call fails (the 3rd piece).
        """
        self.failures.setdefault(method, []).extend(failures)

    def create_forum(self, chat_id: int) -> None:
        """Make ``chat_id`` a supergroup with topics (its General topic exists from the start)."""
        if chat_id not in self.forums:
            self.forums[chat_id] = {}
            self._next_message_id(chat_id)  # message 1 opened General: topics come after

    def create_topic(self, chat_id: int, name: str) -> int:
        """Open a topic in forum ``chat_id``; its id is its creating service message's id."""
        self.create_forum(chat_id)
        topic = self._next_message_id(chat_id)
        self.forums[chat_id][topic] = name
        return topic

    def _chat(self, chat_id: int, user_id: int | None = None) -> JSON:
        if chat_id in self.forums:
            return {"id": chat_id, "type": "supergroup", "is_forum": True}
        return {"id": chat_id, "type": "private" if chat_id == user_id else "supergroup"}

    def _thread_problem(self, chat_id: int, params: JSON, *, action: bool = False) -> bool:
        """Whether ``message_thread_id`` names no thread a message (or an action) may go to."""
        if "message_thread_id" not in params:
            return False
        thread = int(params["message_thread_id"])
        topics = self.forums.get(chat_id)
        if topics is None:
            return True
        return not (thread in topics or (action and thread == GENERAL_TOPIC))

    def user(self, user_id: int, name: str = "Ada") -> JSON:
        return {"id": user_id, "is_bot": False, "first_name": name, "username": name.lower()}

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        thread_id: int | None = None,
        name: str = "Ada",
        reply_to: int | None = None,
    ) -> JSON:
        """Queue a message from a user; return its update.

        ``thread_id`` puts it in that forum topic (the chat becomes a forum with the topic
        if it is not one yet); :data:`GENERAL_TOPIC` or None in a forum is the General
        topic. ``reply_to`` makes it a reply to that message of the chat.
        """
        chat = chat_id if chat_id is not None else user_id
        if thread_id is not None and thread_id != GENERAL_TOPIC:
            self.forums.setdefault(chat, {}).setdefault(thread_id, f"topic {thread_id}")
        message: JSON = {
            "message_id": self._next_message_id(chat),
            "date": int(time.time()),
            "chat": self._chat(chat, user_id),
            "from": self.user(user_id, name),
            "text": text,
        }
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        in_topic = thread_id is not None and thread_id != GENERAL_TOPIC
        if in_topic:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if reply_to is not None:
            message["reply_to_message"] = {
                "message_id": reply_to,
                "date": int(time.time()),
                "chat": self._chat(chat, user_id),
                "text": "…",
            }
            if not in_topic and chat in self.forums:
                # Telegram's own quirk: a reply in General names the replied-to message
                # as its thread, though General is no topic.
                message["message_thread_id"] = reply_to
        return self.push({"message": message})

    def send_voice(
        self,
        user_id: int,
        audio: bytes,
        *,
        mime: str = "audio/ogg",
        duration: int = 2,
        chat_id: int | None = None,
        thread_id: int | None = None,
    ) -> JSON:
        """Queue a voice note from a user (its audio served by getFile); return its update.
        ``chat_id`` and ``thread_id`` put it in a group or forum topic, as for text."""
        file_id = f"voice-{len(self.files) + 1}"
        self.files[file_id] = audio
        chat = chat_id if chat_id is not None else user_id
        message: JSON = {
            "message_id": self._next_message_id(chat),
            "date": int(time.time()),
            "chat": self._chat(chat, user_id),
            "from": self.user(user_id),
            "voice": {
                "file_id": file_id,
                "file_unique_id": f"u-{file_id}",
                "duration": duration,
                "mime_type": mime,
                "file_size": len(audio),
            },
        }
        if thread_id is not None and thread_id != GENERAL_TOPIC:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return self.push({"message": message})

    async def _m_getFile(self, params: JSON) -> JSON | web.Response:
        file_id = params.get("file_id", "")
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"voice/{file_id}.oga",
        }

    async def _download(self, request: web.Request) -> web.Response:
        """GET /file/bot<token>/<file_path>: a file's bytes, as Telegram serves them."""
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1].removesuffix(".oga")
        self.file_downloads.append(file_id)
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="audio/ogg")

    def press(self, user_id: int, data: str, card: StoredMessage, *, name: str = "Ada") -> JSON:
        """Queue a button press on ``card``; return its update."""
        message: JSON = {
            "message_id": card.message_id,
            "date": int(time.time()),
            "chat": self._chat(card.chat_id, card.chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "soloops"},
            "text": card.text,
        }
        if card.thread_id is not None:
            message["message_thread_id"] = card.thread_id
            message["is_topic_message"] = True
        query = {
            "id": f"cq{next(self._update_ids)}",
            "from": self.user(user_id, name),
            "chat_instance": f"ci{card.chat_id}",
            "data": data,
            "message": message,
        }
        return self.push({"callback_query": query})

    def push(self, body: JSON, *, update_id: int | None = None) -> JSON:
        """Queue an update (a fresh id unless given: Telegram redelivers with the same id).

        In webhook mode the update is not queued for getUpdates: post it with
        :meth:`post_webhook`.
        """
        update = {"update_id": update_id or next(self._update_ids), **body}
        if self.webhook is None:
            self.updates.append(update)
        self._new_update.set()
        return update

    def push_raw(self, payload: Any) -> JSON:
        """Queue ``payload`` as an update exactly as given; return its queue entry.

        The entry's ``update_id`` is the emulator's own position for it: the update is
        forgotten, as Telegram forgets, once the bot asks for an offset past it.
        """
        entry = {"update_id": next(self._update_ids), RAW: payload}
        self.updates.append(entry)
        self._new_update.set()
        return entry

    def sent(self, chat_id: int | None = None) -> list[StoredMessage]:
        """Messages the bot sent, oldest first."""
        return [m for m in self.messages.values() if chat_id is None or m.chat_id == chat_id]

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self, predicate: Callable[[], object], within_s: float = 5.0, what: str = "condition"
    ) -> None:
        """Wait until ``predicate()`` is true, re-checking after every request."""
        try:
            async with asyncio.timeout(within_s):
                while not predicate():
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.05)
        except TimeoutError:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}") from None

    def redeliver(self, update: JSON) -> None:
        """Deliver ``update`` again though it was confirmed, as Telegram sometimes does."""
        self._forced.append(update)
        self._new_update.set()

    def redelivered(self, update: JSON) -> bool:
        """Whether a redelivered ``update`` went out and the bot has asked for more since."""
        handed = self._handed_out.get(update["update_id"])
        return handed is not None and len(self.calls_of("getUpdates")) > handed

    def confirmed(self, update: JSON) -> bool:
        """Whether the bot has confirmed ``update`` (asked for updates past it)."""
        return any(
            int(call.params.get("offset") or 0) > update["update_id"]
            for call in self.calls_of("getUpdates")
        )

    async def post_webhook(
        self, update: JSON, *, secret: str | None = None, timeout_s: float = 30.0
    ) -> int:
        """POST ``update`` to the webhook the bot set, as Telegram does; the HTTP status.

        ``secret`` replaces the token the bot registered (a forger's guess).
        """
        hook = self.webhook
        assert hook is not None, "the bot has not set a webhook"
        token = hook.get("secret_token", "") if secret is None else secret
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(
                hook["url"],
                data=json.dumps(update),
                headers={
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": token,
                },
            ) as answer,
        ):
            await answer.read()
            return answer.status

    def pending_updates(self) -> int:
        return len(self.updates)

    # -- Bot API -------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        form = await request.post()
        params: JSON = {
            key: _upload(value) if isinstance(value, web.FileField) else str(value)
            for key, value in form.items()
        }
        self.calls.append(Call(method, params))
        try:
            queued = self.failures.get(method)
            if queued:
                failure = queued.pop(0)
                if failure.status == 200:
                    pass  # this call goes through; a later one fails
                elif failure.hang_s is None:
                    body: JSON = {
                        "ok": False,
                        "error_code": failure.status,
                        "description": failure.description,
                    }
                    if failure.retry_after is not None:
                        body["parameters"] = {"retry_after": failure.retry_after}
                    return web.json_response(body, status=failure.status)
                else:
                    await asyncio.sleep(failure.hang_s)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return _error(404, f"Not Found: method {method} is not emulated")
            result = await handler(params)
            if isinstance(result, web.Response):
                return result
            return web.json_response({"ok": True, "result": result})
        finally:
            self._changed.set()

    async def _m_getMe(self, params: JSON) -> JSON:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "soloops",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_deleteWebhook(self, params: JSON) -> bool:
        self.webhook = None
        return True

    async def _m_setWebhook(self, params: JSON) -> bool:
        self.webhook = params
        return True

    async def _m_getUpdates(self, params: JSON) -> list[JSON] | web.Response:
        if self.webhook is not None:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset", 0) or 0)
        timeout = float(params.get("timeout", 0) or 0)
        deadline = time.monotonic() + timeout
        while True:
            if offset:
                # Telegram forgets every update below the offset: they are confirmed.
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if self._forced:
                forced, self._forced = self._forced, []
                for update in forced:
                    self._handed_out[update["update_id"]] = len(self.calls_of("getUpdates"))
                return [_served(u) for u in forced + list(self.updates)]
            if self.updates:
                return [_served(u) for u in self.updates]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), remaining)

    async def _m_sendMessage(self, params: JSON) -> JSON | web.Response:
        chat_id = int(params["chat_id"])
        if chat_id in self.unknown_chats:
            return _error(400, "Bad Request: chat not found")
        if self._thread_problem(chat_id, params):
            return _error(400, THREAD_NOT_FOUND)
        text = params.get("text", "")
        if not 1 <= len(_visible(text, params).encode("utf-16-le")) // 2 <= 4096:
            return _error(400, "Bad Request: message is too long")
        reply = json.loads(params["reply_parameters"]) if "reply_parameters" in params else None
        markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
        for button in (b for row in (markup or {}).get("inline_keyboard", []) for b in row):
            if len(button.get("callback_data", "").encode()) > 64:
                return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        stored = StoredMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            text=text,
            parse_mode=params.get("parse_mode"),
            reply_to=reply["message_id"] if reply else None,
            thread_id=int(params["message_thread_id"]) if "message_thread_id" in params else None,
            reply_markup=markup,
        )
        self.messages[(chat_id, stored.message_id)] = stored
        return self._message_json(stored)

    async def _m_sendPhoto(self, params: JSON) -> JSON | web.Response:
        return self._send_file(params, "photo")

    async def _m_sendDocument(self, params: JSON) -> JSON | web.Response:
        return self._send_file(params, "document")

    def _send_file(self, params: JSON, kind: str) -> JSON | web.Response:
        """sendPhoto / sendDocument with a multipart upload (a file id or URL is refused)."""
        chat_id = int(params["chat_id"])
        if chat_id in self.unknown_chats:
            return _error(400, "Bad Request: chat not found")
        if self._thread_problem(chat_id, params):
            return _error(400, THREAD_NOT_FOUND)
        upload = params.get(kind)
        if not isinstance(upload, Upload) or not upload.content:
            return _error(400, f"Bad Request: there is no {kind} in the request")
        if kind == "photo" and not upload.content.startswith((PNG_MAGIC, JPEG_MAGIC)):
            return _error(400, "Bad Request: IMAGE_PROCESS_FAILED")
        caption = str(params.get("caption", ""))
        if len(_visible(caption, params).encode("utf-16-le")) // 2 > CAPTION_LIMIT:
            return _error(400, "Bad Request: message caption is too long")
        reply = json.loads(params["reply_parameters"]) if "reply_parameters" in params else None
        stored = StoredMessage(
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            text=caption,
            parse_mode=params.get("parse_mode"),
            reply_to=reply["message_id"] if reply else None,
            thread_id=int(params["message_thread_id"]) if "message_thread_id" in params else None,
            photo=upload if kind == "photo" else None,
            document=upload if kind == "document" else None,
        )
        self.messages[(chat_id, stored.message_id)] = stored
        return self._message_json(stored)

    async def _m_editMessageText(self, params: JSON) -> JSON | web.Response:
        found = self._find(params)
        if isinstance(found, web.Response):
            return found
        markup = json.loads(params["reply_markup"]) if "reply_markup" in params else None
        if found.text == params["text"] and found.reply_markup == markup:
            return _error(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        found.text = params["text"]
        found.parse_mode = params.get("parse_mode")
        found.reply_markup = markup
        found.edits += 1
        return self._message_json(found)

    async def _m_editMessageReplyMarkup(self, params: JSON) -> JSON | web.Response:
        found = self._find(params)
        if isinstance(found, web.Response):
            return found
        found.reply_markup = (
            json.loads(params["reply_markup"]) if "reply_markup" in params else None
        )
        found.edits += 1
        return self._message_json(found)

    async def _m_sendChatAction(self, params: JSON) -> bool | web.Response:
        chat_id = int(params["chat_id"])
        if chat_id in self.unknown_chats:
            return _error(400, "Bad Request: chat not found")
        if self._thread_problem(chat_id, params, action=True):
            return _error(400, THREAD_NOT_FOUND)
        thread = int(params["message_thread_id"]) if "message_thread_id" in params else None
        self.chat_actions.append(
            {"chat_id": chat_id, "action": params.get("action"), "thread_id": thread}
        )
        return True

    async def _m_answerCallbackQuery(self, params: JSON) -> bool:
        self.callback_answers.append(params)
        return True

    async def _m_setMyCommands(self, params: JSON) -> bool:
        commands = params.get("commands", [])
        self.my_commands = json.loads(commands) if isinstance(commands, str) else list(commands)
        return True

    # -- helpers -------------------------------------------------------------

    def _find(self, params: JSON) -> StoredMessage | web.Response:
        key = (int(params["chat_id"]), int(params["message_id"]))
        found = self.messages.get(key)
        if found is None:
            return _error(400, "Bad Request: message to edit not found")
        return found

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _message_json(self, stored: StoredMessage) -> JSON:
        message: JSON = {
            "message_id": stored.message_id,
            "date": int(time.time()),
            "chat": self._chat(stored.chat_id, stored.chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "soloops"},
            "text": stored.text,
        }
        if stored.reply_markup:
            message["reply_markup"] = stored.reply_markup
        ident = f"file-{stored.chat_id}-{stored.message_id}"
        if stored.photo is not None or stored.document is not None:
            message.pop("text")
            if stored.text:
                message["caption"] = stored.text
        if stored.photo is not None:
            message["photo"] = [
                {"file_id": ident, "file_unique_id": ident, "width": 1, "height": 1}
            ]
        if stored.document is not None:
            message["document"] = {
                "file_id": ident,
                "file_unique_id": ident,
                "file_name": stored.document.filename,
                "mime_type": stored.document.content_type,
            }
        if stored.thread_id is not None:
            message["message_thread_id"] = stored.thread_id
            message["is_topic_message"] = True
        return message


def _served(update: JSON) -> Any:
    return update.get(RAW, update)


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


_TAG = re.compile(r"<[^>]+>")


def _visible(text: str, params: JSON) -> str:
    """The text as Telegram measures it: after entity parsing (tags and escapes gone)."""
    if params.get("parse_mode") == "HTML":
        return html.unescape(_TAG.sub("", text))
    return text
