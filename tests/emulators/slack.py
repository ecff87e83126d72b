"""A loopback emulator of the Slack Web API, and a client for signed inbound requests.

The emulator serves ``/api/<method>`` on 127.0.0.1 the way Slack answers the methods
soloops calls (auth.test, chat.postMessage, chat.update, chat.postEphemeral, and the
external file upload: files.getUploadURLExternal, the upload URL, then
files.completeUploadExternal, files.info; views.publish, keeping each user's Home
view; views.open, taking only a trigger id it issued (:meth:`SlackEmulator.trigger`)
and only once, keeping the modal), reading
JSON and form bodies alike, plus ``/response/<id>`` for ``response_url`` posts and
``/files-pri/<team>-<file id>/download/<name>`` serving shared files to the bot token
(any other token gets Slack's sign-in page, an unknown file 404). It
records every call, keeps the messages it holds (so ``chat.update`` of an unknown
message fails as on Slack), and fails on demand: the next N calls of a method answer
429 with ``Retry-After``, or 500. :meth:`SlackEmulator.hold` keeps a method's answers
back until released, so a test can change things while a call is in flight.

Payload builders below make what Slack sends soloops: slash commands, events
(``app_home_opened`` among them), block_actions clicks on a message or on the Home
tab, and a modal's ``view_submission`` built from the modal the emulator opened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM_ID = "T0000001"
TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
MISSING_CHANNELS = frozenset({"C404"})


@dataclass(frozen=True)
class Call:
    """One request the emulator answered."""

    method: str
    args: dict[str, Any]
    status: int


@dataclass
class SlackEmulator:
    """State of the emulated workspace; see the module docstring."""

    base: str = ""
    calls: list[Call] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # posts to response_url
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode acks received
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _failures: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # by file id
    shared: list[dict[str, Any]] = field(default_factory=list)  # completed uploads
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _file_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # shared by users, by id
    file_contents: dict[str, bytes] = field(default_factory=dict)
    file_downloads: list[tuple[str, int]] = field(default_factory=list)  # (file id, status)
    files_read_scope: bool = True  # False: the bot token lacks files:read
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)  # Home view per user
    modals: dict[str, dict[str, Any]] = field(default_factory=dict)  # opened, by view id
    _triggers: dict[str, str] = field(default_factory=dict)  # unused trigger id -> user
    _view_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _held: dict[str, asyncio.Event] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)  # held calls, per method

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"{self.base}/response/{name}"

    def fail(
        self,
        method: str,
        times: int = 1,
        *,
        status: int = 429,
        retry_after: float = 1,
        after: int = 0,
    ) -> None:
        """Answer ``times`` calls of ``method`` with ``status``, after ``after`` good ones."""
        queue = self._failures.setdefault(method, [])
        queue.extend([(200, 0.0)] * after + [(status, retry_after)] * times)

    def trigger(self, user: str) -> str:
        """A trigger id as Slack puts in an interaction of ``user`` (usable once)."""
        trigger_id = f"{next(self._view_ids)}.{time.monotonic_ns()}.trig"
        self._triggers[trigger_id] = user
        return trigger_id

    def hold(self, method: str) -> None:
        """Keep answers to ``method`` back until :meth:`release` (counted in ``in_flight``)."""
        self._held[method] = asyncio.Event()

    def release(self, method: str) -> None:
        """Answer the held calls of ``method`` and stop holding it."""
        held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def home_of(self, user: str) -> str:
        """The text of ``user``'s Home view (sections and contexts, in order)."""
        view = self.homes.get(user)
        return "" if view is None else blocks_text(view["blocks"])

    def share_file(
        self, content: bytes, *, name: str = "audio_message.webm", mimetype: str = "audio/webm"
    ) -> dict[str, Any]:
        """A file a user shared (a voice clip by default): its ``files`` entry."""
        file_id = f"FA{next(self._file_ids):07d}"
        url = f"{self.base}/files-pri/{TEAM_ID}-{file_id}/download/{name}"
        entry = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "subtype": "slack_audio" if mimetype.startswith("audio/") else None,
            "size": len(content),
            "url_private": url,
            "url_private_download": url,
        }
        self.files[file_id] = entry
        self.file_contents[file_id] = content
        return entry

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["key"].removeprefix(f"{TEAM_ID}-")
        if file_id not in self.file_contents:
            self.file_downloads.append((file_id, 404))
            return web.Response(status=404, text="file not found")
        authorised = request.headers.get("Authorization") == f"Bearer {TOKEN}"
        if not (authorised and self.files_read_scope):
            # Slack answers an unauthorised download with its sign-in page, not an error.
            self.file_downloads.append((file_id, 401))
            return web.Response(text="<html>Sign in to Slack</html>", content_type="text/html")
        self.file_downloads.append((file_id, 200))
        return web.Response(
            body=self.file_contents[file_id], content_type=self.files[file_id]["mimetype"]
        )

    def called(self, method: str) -> list[Call]:
        """Successful calls of one method, oldest first."""
        return [c for c in self.calls if c.method == method and c.status == 200]

    async def wait_for(
        self, check: Callable[[], Any], *, within: float = 5.0, what: str = "a Slack call"
    ) -> Any:
        """Poll until ``check()`` is truthy (work happens after the ack); return it."""
        deadline = time.monotonic() + within
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; calls: {self.calls}")
            await asyncio.sleep(0.02)

    # --- the server ----------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        held = self._held.get(method)
        if held is not None:
            self.in_flight[method] = self.in_flight.get(method, 0) + 1
            await held.wait()
            self.in_flight[method] -= 1
        failures = self._failures.get(method)
        status, retry_after = failures.pop(0) if failures else (200, 0.0)
        if status != 200:
            self.calls.append(Call(method, args, status))
            if status == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": f"{retry_after:g}"},
                )
            return web.Response(status=status, text="upstream trouble")
        auth = request.headers.get("Authorization", "")
        if method == "apps.connections.open":  # the one method that takes the app token
            body: dict[str, Any] = (
                {"ok": True, "url": f"{self.base.replace('http', 'ws', 1)}/link"}
                if auth == f"Bearer {APP_TOKEN}"
                else {"ok": False, "error": "invalid_auth"}
            )
        elif auth != f"Bearer {TOKEN}":
            body = {"ok": False, "error": "invalid_auth"}
        else:
            body = self._answer(method, args)
        self.calls.append(Call(method, args, 200 if body.get("ok") else 400))
        return web.json_response(body)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://acme.slack.com/",
                "team": "Acme",
                "user": "soloops",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
            }
        channel = str(args.get("channel", ""))
        writes = ("chat.postMessage", "chat.update", "chat.postEphemeral")
        if method in writes and (not channel or channel in MISSING_CHANNELS):
            return {"ok": False, "error": "channel_not_found"}
        if method == "chat.postMessage":
            ts = self._next_ts()
            message = {"ts": ts, "text": args.get("text"), "blocks": args.get("blocks")}
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            self.messages[(channel, ts)] = message
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            key = (channel, str(args.get("ts")))
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key].update(text=args.get("text"), blocks=args.get("blocks"))
            return {"ok": True, "channel": channel, "ts": key[1], "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "files.getUploadURLExternal":
            return self._upload_url(args)
        if method == "files.completeUploadExternal":
            return self._complete_upload(args)
        if method == "views.publish":
            return self._publish(args)
        if method == "views.open":
            return self._open(args)
        if method == "files.info":
            found = self.files.get(str(args.get("file", "")))
            return (
                {"ok": True, "file": found} if found else {"ok": False, "error": "file_not_found"}
            )
        return {"ok": False, "error": "unknown_method"}

    def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user, view = str(args.get("user_id") or ""), args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        problem = view_problem(view, "home")
        if not user or problem:
            return {"ok": False, "error": "invalid_arguments", "detail": problem}
        view_id = f"VH{user}"
        self.homes[user] = {**view, "id": view_id}
        return {"ok": True, "view": self.homes[user]}

    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger, view = str(args.get("trigger_id") or ""), args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        user = self._triggers.pop(trigger, None)  # single use, as on Slack
        if user is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        problem = view_problem(view, "modal")
        if problem:
            return {"ok": False, "error": "invalid_arguments", "detail": problem}
        view_id = f"VM{next(self._view_ids):06d}"
        opened = {**view, "id": view_id, "hash": f"h{view_id}"}
        self.modals[view_id] = {"user": user, "view": opened}
        return {"ok": True, "view": opened}

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = str(args.get("filename") or ""), str(args.get("length") or "")
        if not filename or not length.isdecimal() or int(length) <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_ids):08d}"
        self.uploads[file_id] = {"filename": filename, "length": int(length), "content": None}
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: takes the file's bytes (raw or multipart), as long as announced."""
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="unknown upload")
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            [part] = [v for v in form.values() if isinstance(v, web.FileField)]
            content = part.file.read()
        else:
            content = await request.read()
        if len(content) != upload["length"]:
            return web.Response(status=400, text="length mismatch")
        upload["content"] = content
        return web.Response(text=f"OK - {len(content)}")

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        channel = str(args.get("channel_id") or "")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        if channel in MISSING_CHANNELS:
            return {"ok": False, "error": "channel_not_found"}
        done = []
        for entry in files:
            upload = self.uploads.get(str(entry.get("id")))
            if upload is None or upload["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            done.append(
                {"id": entry["id"], "title": entry.get("title"), "name": upload["filename"]}
            )
            self.shared.append(
                {
                    **upload,
                    "id": entry["id"],
                    "title": entry.get("title"),
                    "channel": channel,
                    "thread_ts": args.get("thread_ts"),
                    "initial_comment": args.get("initial_comment"),
                }
            )
        return {"ok": True, "files": done}

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append({"name": request.match_info["name"], **await request.json()})
        return web.Response(text="ok")

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": 1})
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
        return socket

    async def deliver(self, kind: str, payload: dict[str, Any], envelope_id: str) -> dict[str, Any]:
        """Send one Socket Mode envelope to the connected app; return its ack."""
        await self.wait_for(lambda: self._sockets, what="a Socket Mode connection")
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        await self._sockets[-1].send_json(envelope)
        acks = await self.wait_for(
            lambda: [a for a in self.acks if a.get("envelope_id") == envelope_id], what="the ack"
        )
        ack: dict[str, Any] = acks[0]
        return ack

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n:06d}"


async def _read_args(request: web.Request) -> dict[str, Any]:
    # slack_sdk sends some methods' arguments as the query string (params=).
    query = {key: _json_or_text(value) for key, value in request.query.items()}
    return {**query, **await _read_body(request)}


def view_problem(view: Any, kind: str) -> str | None:
    """Why Slack would refuse ``view`` as a ``kind`` view (the checks soloops could trip)."""
    if not isinstance(view, dict) or view.get("type") != kind:
        return f"not a {kind} view"
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > 100:
        return "blocks: a list of at most 100"
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    if len(ids) != len(set(ids)):
        return "duplicate block_id"
    if kind == "modal":
        if len(view.get("title", {}).get("text", "")) > 24:
            return "title longer than 24"
        for block in blocks:
            element = block.get("element", {})
            if block.get("type") == "input" and len(element.get("initial_value", "")) > int(
                element.get("max_length", 3000)
            ):
                return "initial_value longer than max_length"
    return None


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    """The readable text of some blocks: sections, headers and contexts, one a line."""
    lines = []
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict):
            lines.append(str(text.get("text", "")))
        for element in block.get("elements", ()):
            if block.get("type") == "context":
                lines.append(str(element.get("text", "")))
    return "\n".join(lines)


def _json_or_text(value: str) -> Any:
    try:  # form fields carry JSON for structured values (blocks, files)
        return json.loads(value) if value[:1] in "[{" else value
    except ValueError:
        return value


async def _read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.text()
    if not raw:
        return {}
    if request.content_type == "application/json":
        loaded: dict[str, Any] = json.loads(raw)
        return loaded
    args: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(raw):
        args[key] = _json_or_text(value)
    return args


@asynccontextmanager
async def slack_emulator() -> AsyncIterator[SlackEmulator]:
    """Run the emulator on an ephemeral port of 127.0.0.1."""
    emulator = SlackEmulator()
    app = web.Application()
    app.router.add_post("/api/{method}", emulator._api)
    app.router.add_get("/api/{method}", emulator._api)  # slack_sdk GETs files.info
    app.router.add_post("/response/{name}", emulator._response)
    app.router.add_post("/upload/{file_id}", emulator._upload)
    app.router.add_get("/link", emulator._link)
    app.router.add_get("/files-pri/{key}/download/{name}", emulator._download)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    emulator.base = f"http://{host}:{port}"
    try:
        yield emulator
    finally:
        await runner.cleanup()


@dataclass
class SlackClient:
    """Sends signed requests to soloops's ``/slack/events``, as Slack does."""

    url: str
    secret: str
    session: aiohttp.ClientSession

    async def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        sent = {"Content-Type": content_type, **(headers or {})}
        if signed:
            signature = SignatureVerifier(secret or self.secret).generate_signature(
                timestamp=stamp, body=body
            )
            sent.update({"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or ""})
        async with self.session.post(self.url, data=body, headers=sent) as response:
            return response.status, await response.text()

    async def command(self, text: str, *, user: str, channel: str = "C0001", **kw: Any):
        """A ``/ops`` slash command."""
        form = command_form(
            text, user=user, channel=channel, response_url=kw.pop("response_url", None)
        )
        body = urllib.parse.urlencode(form).encode()
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def event(self, event: dict[str, Any], *, event_id: str, **kw: Any) -> tuple[int, str]:
        """An Events API ``event_callback``."""
        envelope = event_callback(event, event_id=event_id)
        return await self.post(json.dumps(envelope).encode(), "application/json", **kw)

    async def file_share(
        self,
        file: dict[str, Any],
        *,
        event_id: str,
        user: str,
        channel: str = "D0001",
        text: str = "",
        **kw: Any,
    ) -> tuple[int, str]:
        """A DM (``channel_type: im``) sharing ``file`` (see :meth:`SlackEmulator.share_file`)."""
        event = file_share_event(file, user=user, channel=channel, text=text)
        return await self.event(event, event_id=event_id, **kw)

    async def click(
        self,
        *,
        user: str,
        value: str,
        channel: str,
        message_ts: str,
        response_url: str,
        action_ts: str | None = None,
        **kw: Any,
    ) -> tuple[int, str]:
        """A ``block_actions`` click on a button of a message."""
        payload = click_payload(
            user=user,
            value=value,
            channel=channel,
            message_ts=message_ts,
            response_url=response_url,
            action_ts=action_ts,
        )
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def interaction(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        """Any interaction payload (a Home click, a view_submission), as a form field."""
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, "application/x-www-form-urlencoded", **kw)

    async def home_opened(self, user: str, *, event_id: str, **kw: Any) -> tuple[int, str]:
        """``user`` opened the app's Home tab."""
        return await self.event(home_opened_event(user), event_id=event_id, **kw)


def command_form(
    text: str, *, user: str, channel: str = "C0001", response_url: str | None = None
) -> dict[str, str]:
    """The fields of a ``/ops`` slash command."""
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "channel_id": channel,
        "user_id": user,
        "user_name": f"name-{user}",
        "command": "/ops",
        "text": text,
        "response_url": response_url or "http://127.0.0.1:9/unused",
        "trigger_id": f"trig-{time.monotonic_ns()}",
    }


def event_callback(event: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    """An Events API envelope around one event."""
    return {
        "token": "legacy",
        "team_id": TEAM_ID,
        "api_app_id": "A0001",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }


def file_share_event(
    file: dict[str, Any], *, user: str, channel: str = "D0001", text: str = ""
) -> dict[str, Any]:
    """A ``message`` event of ``subtype: file_share`` in a DM, as Slack sends a voice clip."""
    ts = f"{time.time():.6f}"
    return {
        "type": "message",
        "subtype": "file_share",
        "channel": channel,
        "channel_type": "im",
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "upload": False,
        "files": [file],
    }


def click_payload(
    *,
    user: str,
    value: str,
    channel: str,
    message_ts: str,
    response_url: str,
    action_ts: str | None = None,
    action_id: str = "soloops.button.0",
    trigger_id: str = "trig",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a click on one of soloops's buttons."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": "card"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user, "username": f"name-{user}"},
        "api_app_id": "A0001",
        "trigger_id": trigger_id,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel},
        "message": message,
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "soloops.buttons",
                "value": value,
                "action_ts": action_ts or f"{time.time():.6f}",
            }
        ],
    }


def home_opened_event(user: str, tab: str = "home") -> dict[str, Any]:
    """The ``app_home_opened`` event (``tab`` is "messages" for the Messages tab)."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0001",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


def home_click_payload(
    *, user: str, element: dict[str, Any], view_id: str, trigger_id: str = "trig"
) -> dict[str, Any]:
    """A ``block_actions`` payload for a press of ``element`` (a button of a published
    Home view): no channel, no response_url, the view as container."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user, "username": f"name-{user}"},
        "api_app_id": "A0001",
        "trigger_id": trigger_id,
        "container": {"type": "view", "view_id": view_id},
        "view": {"id": view_id, "type": "home", "callback_id": "", "private_metadata": ""},
        "actions": [
            {
                "type": "button",
                "action_id": element["action_id"],
                "block_id": "soloops.buttons.0",
                "value": element.get("value"),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission_payload(
    modal: dict[str, Any], *, user: str, values: dict[str, str], trigger_id: str = "trig-submit"
) -> dict[str, Any]:
    """What Slack sends when ``user`` presses the submit button of ``modal`` (a view the
    emulator opened) with ``values`` typed into its inputs (by block id)."""
    state: dict[str, dict[str, Any]] = {}
    for block in modal["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        typed = values.get(block["block_id"], element.get("initial_value"))
        state[block["block_id"]] = {element["action_id"]: {"type": element["type"], "value": typed}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID},
        "user": {"id": user, "username": f"name-{user}", "name": f"name-{user}"},
        "api_app_id": "A0001",
        "trigger_id": trigger_id,
        "view": {
            **modal,
            "state": {"values": state},
        },
        "response_urls": [],
    }
