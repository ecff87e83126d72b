"""The Slack front end: slack-bolt's async app, in HTTP mode or Socket Mode.

    Slack --POST /slack/events--> signature check --> bolt AsyncApp --> listener
                                  (401 + event)                          |
        record in the gateway (inbound log, dedupe, operator check) <----+
        -> ack -> the coordinator works -> outbox -> SlackSender -> Web API

Listeners record the message *before* they acknowledge it (bolt runs with
``process_before_response=True``): recording is one SQLite transaction, well inside
Slack's 3 seconds, so nothing Slack was told we took can be lost by a crash, and a
retry Slack sends meanwhile (``X-Slack-Retry-Num``) is a duplicate by event id. The
work itself runs after the ack, in the coordinator. If recording ever takes longer
than :data:`ACK_BUDGET_S` the listener acks anyway and the recording finishes in a
task the front end keeps.

Strangers get an ephemeral refusal (the slash command's own response, or
``chat.postEphemeral``); a click's outcome for the presser goes to its ``response_url``
as an ephemeral message, while the card itself is edited through the outbox.

A shared audio file (a voice clip) is recorded with its file reference; the voice
feature fetches it through :meth:`SlackFrontEnd.download_audio` (registered with the
runtime's audio sources on start): a GET of ``url_private_download`` with the bot
token, which needs the ``files:read`` scope. The token is only ever sent to Slack's
own hosts or the configured API base URL's host (the emulator in tests).

HTTP mode verifies every request twice: here, to refuse unsigned, forged and stale
requests with 401 and record them as ``slack.request_refused`` events, and again in
bolt's own RequestVerification. Socket Mode needs no signing: Slack authenticates the
websocket with the app-level token.

The App Home tab is the operator's dashboard (:mod:`bot.slack_home`): published on
``app_home_opened`` and refreshed when the board changes; its card buttons are the
cards' own, pressed through the same gateway path (the outcome shows on top of the
refreshed tab, as there is no message to answer under). A card whose action has
text to edit has an Edit button that opens a modal (:mod:`bot.slack_edit`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import ValidationError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from agents.board import BoardReader
from agents.voice_port import AudioRef, AudioUnavailable
from bot.gateway import Handled, Outcome
from bot.http import HttpServer
from bot.inbound import Inbound
from bot.refusals import RefusalBudget
from bot.slack_blocks import ACTION_PREFIX, EDIT_ACTION
from bot.slack_edit import SlackEdit
from bot.slack_home import HomeTab
from bot.slack_inbound import (
    PLATFORM,
    BlockActions,
    EventCallback,
    SlashCommand,
    action_inbound,
    body_problem,
    command_inbound,
    event_inbound,
)
from bot.slack_sender import SlackSender
from bot.slack_views import EDIT_CALLBACK
from config import ConfigError, Settings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
COMMAND = "/ops"
ACK_BUDGET_S = 2.0  # Slack waits 3 s for the ack
MAX_AGE_S = 300  # Slack's replay window: older signed requests are refused
MAX_BODY_BYTES = 1024 * 1024
MAX_AUDIO_BYTES = 25 * 1024 * 1024  # the transcription connector's cap
AUDIO_TIMEOUT_S = 60.0


def refusal(user_id: str) -> str:
    """What a Slack user who is not an operator is told (only they see it)."""
    return (
        "Not allowed: you are not a soloops operator here, so nothing was run. "
        f"The owner can add your Slack user id ({user_id}) to SOLOOPS_SLACK__OPERATORS."
    )


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why a request is not verifiably from Slack (v0 HMAC-SHA256), or None if it is."""
    if not timestamp or not signature:
        return "unsigned"
    try:
        sent = int(timestamp)
    except ValueError:
        return "bad_timestamp"
    if abs(now - sent) > MAX_AGE_S:
        return "stale"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_body"
    expected = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=text)
    if expected is None or not hmac.compare_digest(expected, signature):
        return "bad_signature"
    return None


def token_may_go_to(url: str, api_base_url: str) -> bool:
    """Whether the bot token may be sent to ``url``: https on a Slack host, or the host
    of the configured API base URL (an emulator in tests, a proxy in production)."""
    target, base = urlsplit(url), urlsplit(api_base_url)
    if not target.hostname:
        return False
    if (target.scheme, target.netloc) == (base.scheme, base.netloc):
        return True
    host = target.hostname.lower()
    return target.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))


class SlackFrontEnd:
    """Slack as a soloops front end (see the module docstring)."""

    platform = PLATFORM

    def __init__(self, settings: Settings, server: HttpServer | None = None) -> None:
        """Set up Slack; in HTTP mode its route goes on ``server`` (shared, started and
        stopped by its owner) or, without one, on a server of its own from ``settings.http``.
        """
        slack = settings.slack
        if slack.bot_token is None:
            raise ConfigError("Slack needs a bot token: set SOLOOPS_SLACK__BOT_TOKEN (xoxb-...).")
        self._settings = settings
        self._client = AsyncWebClient(
            token=slack.bot_token.get_secret_value(), base_url=slack.api_base_url
        )
        self._sender = SlackSender(self._client)
        self._operators = frozenset(slack.operators)
        secret = slack.signing_secret.get_secret_value() if slack.signing_secret else ""
        self._secret = secret
        self._app = AsyncApp(
            client=self._client,
            signing_secret=secret,
            request_verification_enabled=not slack.socket_mode,
            process_before_response=True,
            logger=logging.getLogger("bot.slack.bolt"),
        )
        # /ops and the per-feature slash commands (bot/manifest.py); Slack sends only
        # those the app's manifest declares.
        self._app.command(re.compile(r"^/[a-z0-9_]+$"))(self._on_command)
        self._app.event("message")(self._on_event)
        self._app.event("app_mention")(self._on_event)
        self._app.action(re.compile(rf"^{re.escape(ACTION_PREFIX)}"))(self._on_action)
        self._app.event("app_home_opened")(self._on_home_opened)
        self._home = HomeTab(self._client, self._operators, min_interval_s=slack.home_refresh_s)
        self._reader: BoardReader | None = None
        self._edit = SlackEdit(
            self._client,
            self._operators,
            self._board_reader,
            lambda: self._runtime_or_fail().events,
            self._record,
            self._tell,
        )
        self._app.action(EDIT_ACTION)(self._edit.on_press)
        self._app.view(EDIT_CALLBACK)(self._edit.on_submit)
        self._runtime: Runtime | None = None
        self._bot_user_id: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refusals = RefusalBudget()
        self._socket: AsyncSocketModeHandler | None = None
        self._server: HttpServer | None = None
        self._owns_server = False
        if not slack.socket_mode:
            self._owns_server = server is None
            self._server = server or HttpServer(
                settings.http, label="Slack HTTP mode", max_body_bytes=MAX_BODY_BYTES
            )
            self._server.add_route("POST", EVENTS_PATH, self._serve)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where HTTP mode listens, once the server has started (None in Socket Mode)."""
        return self._server.address if self._server is not None else None

    @property
    def sender(self) -> SlackSender:
        """Delivers replies to Slack."""
        return self._sender

    @property
    def home(self) -> HomeTab:
        """The operators' App Home tab."""
        return self._home

    @property
    def operators(self) -> frozenset[str]:
        """The Slack user ids allowed to command soloops."""
        return self._operators

    async def start(self, runtime: Runtime) -> None:
        """Check the token, then serve HTTP or connect Socket Mode."""
        self._runtime = runtime
        self._sender.bind(runtime)
        runtime.audio.register(PLATFORM, self.download_audio)
        if runtime.digest is not None:
            self._reader = BoardReader(
                runtime.store,
                runtime.events,
                runtime.coordinator.approvals,
                runtime.digest,
                runtime.clock,
            )
            self._home.start(self._reader, runtime.store)
        await self._identify()
        if self._settings.slack.socket_mode:
            await self._connect_socket()
            return
        assert self._server is not None
        if self._owns_server:
            await self._server.start()  # a busy port: ConfigError naming SOLOOPS_HTTP__PORT
        log.info("Slack HTTP mode takes events at %s", EVENTS_PATH)

    async def download_audio(self, ref: AudioRef) -> bytes:
        """A shared audio file's bytes: its download URL (``files.info`` when the event
        had none), fetched with the bot token.

        Raises:
            AudioUnavailable: Slack would not hand the file over (the message says why).
        """
        url = ref.url or await self._file_url(ref.file_id)
        if not token_may_go_to(url, self._settings.slack.api_base_url):
            raise AudioUnavailable("the audio's address is not a Slack file URL")
        token = self._client.token or ""
        timeout = aiohttp.ClientTimeout(total=AUDIO_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
            ):
                if response.status != 200:
                    raise AudioUnavailable(
                        f"Slack would not hand over the audio (HTTP {response.status})"
                    )
                if response.content_type == "text/html":  # Slack's sign-in page
                    raise AudioUnavailable(
                        "Slack sent a sign-in page instead of the audio: give the app "
                        "the files:read scope and reinstall it"
                    )
                audio = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    audio += chunk
                    if len(audio) > MAX_AUDIO_BYTES:
                        raise AudioUnavailable("the audio file is larger than 25 MiB")
                return bytes(audio)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise AudioUnavailable(
                f"Slack did not answer the audio download ({type(exc).__name__})"
            ) from exc

    async def _file_url(self, file_id: str) -> str:
        """A file's download URL from ``files.info``."""
        try:
            found = await self._client.files_info(file=file_id)
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            raise AudioUnavailable(
                f"Slack would not describe the audio file ({error or 'refused'})"
            ) from exc
        except (OSError, TimeoutError, SlackClientError) as exc:
            raise AudioUnavailable(
                f"Slack did not answer files.info ({type(exc).__name__})"
            ) from exc
        file = found.get("file")
        url = None
        if isinstance(file, dict):
            url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:
            raise AudioUnavailable("Slack gave no download URL for the audio file")
        return url

    async def _connect_socket(self) -> None:
        app_token = self._settings.slack.app_token
        assert app_token is not None
        token = app_token.get_secret_value()
        self._socket = AsyncSocketModeHandler(self._app, token)
        # Ask for the websocket URL here: the client's own connect retries a refused app
        # token forever, which would hang the start instead of saying what to fix.
        try:
            opened = await self._client.apps_connections_open(app_token=token)
        except SlackApiError as exc:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # bolt leaves it unannotated
            self._socket = None
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else exc
            raise ConfigError(
                f"Slack refused the app-level token ({error}): check SOLOOPS_SLACK__APP_TOKEN "
                "(Basic Information > App-Level Tokens, scope connections:write) and that "
                "Socket Mode is on in the app settings"
            ) from exc
        except (OSError, TimeoutError, SlackClientError) as exc:
            log.warning("Slack is not reachable yet (%s); Socket Mode keeps trying", exc)
        else:
            self._socket.client.wss_uri = str(opened["url"])
        await self._socket.connect_async()  # type: ignore[no-untyped-call]  # as above
        log.info("Slack connected over Socket Mode")

    async def stop(self) -> None:
        """Stop taking requests, then let recordings in flight finish."""
        await self._home.stop()
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # as above
            self._socket = None
        if self._owns_server and self._server is not None:
            await self._server.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _identify(self) -> None:
        try:
            found = await self._client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
                raise ConfigError(
                    f"Slack refused the bot token ({error}): check SOLOOPS_SLACK__BOT_TOKEN "
                    "(OAuth & Permissions > Bot User OAuth Token)"
                ) from exc
            log.warning("Slack auth.test failed (%s); starting anyway", error or exc)
            return
        except (OSError, TimeoutError, SlackClientError) as exc:
            log.warning("Slack is not reachable yet (%s); replies wait in the outbox", exc)
            return
        self._bot_user_id = found.get("user_id")
        log.info("Slack bot %s in team %s", found.get("user"), found.get("team"))

    # --- HTTP ---------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if self._runtime is None:  # a shared server can start before this front end
            return web.Response(status=503, text="soloops is starting; Slack will retry")
        body = await request.read()
        headers = request.headers
        problem = signature_problem(
            self._secret,
            headers.get("X-Slack-Request-Timestamp"),
            headers.get("X-Slack-Signature"),
            body,
            time.time(),
        )
        if problem is not None:
            skipped = self._refusals.admit(time.monotonic())
            if skipped is not None:
                await self._runtime_or_fail().events.record(
                    "slack.request_refused",
                    actor="slack",
                    subject="request",
                    payload={
                        "reason": problem,
                        "remote": request.remote or "",
                        "bytes": len(body),
                        "skipped_before": skipped,
                    },
                )
            return web.Response(status=401, text="invalid or stale Slack request signature")
        text = body.decode("utf-8")  # signature_problem checked it decodes
        malformed = body_problem(text, headers.get("Content-Type"))
        if malformed is not None:
            return await self._malformed(request, malformed, len(body))
        retry = headers.get("X-Slack-Retry-Num")
        if retry is not None:
            log.info("Slack retry %s (%s)", retry, headers.get("X-Slack-Retry-Reason", "?"))
        bolt_request = AsyncBoltRequest(
            body=text,
            query=request.query_string,
            headers={key.lower(): value for key, value in headers.items()},
        )
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))

    async def _malformed(self, request: web.Request, problem: str, size: int) -> web.Response:
        """A signed request soloops cannot read: 400, one log line, one event."""
        log.warning("Slack: refused a malformed request (%s)", problem)
        skipped = self._refusals.admit(time.monotonic())
        if skipped is not None:
            await self._runtime_or_fail().events.record(
                "slack.request_malformed",
                actor="slack",
                subject="request",
                payload={
                    "problem": problem,
                    "remote": request.remote or "",
                    "bytes": size,
                    "skipped_before": skipped,
                },
            )
        return web.Response(status=400, text=f"malformed request: {problem}")

    # --- listeners (bolt passes arguments by name) ----------------------------

    async def _on_command(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        try:
            inbound = command_inbound(SlashCommand.model_validate(body), _now())
        except ValidationError:
            log.warning("a malformed /ops request was ignored")
            await ack()
            return
        handled = await self._record(inbound)
        if handled is not None and handled.outcome is Outcome.REFUSED:
            await ack(text=refusal(inbound.user_id))  # a slash command's answer is ephemeral
        else:
            await ack()

    async def _on_event(self, body: dict[str, Any]) -> None:
        try:
            inbound = event_inbound(
                EventCallback.model_validate(body), self._bot_user_id, _now(), self._names()
            )
        except ValidationError:
            log.warning("a malformed Slack event was ignored")
            return
        if inbound is None:
            return
        handled = await self._record(inbound)
        if handled is not None and handled.outcome is Outcome.REFUSED:
            self._spawn(self._ephemeral(inbound, refusal(inbound.user_id)))

    async def _on_action(self, ack: Callable[..., Awaitable[None]], body: dict[str, Any]) -> None:
        try:
            payload = BlockActions.model_validate(body)
        except ValidationError:
            log.warning("a malformed Slack interaction was ignored")
            await ack()
            return
        inbound = action_inbound(payload, _now())
        handled = await self._record(inbound) if inbound is not None else None
        await ack()
        if inbound is not None and handled is not None and handled.notice:
            if payload.on_home:  # no message to answer under: the refreshed tab says it
                self._home.note(inbound.user_id, handled.notice)
            else:
                self._spawn(self._notify_presser(payload, inbound, handled.notice))

    async def _on_home_opened(self, event: dict[str, Any]) -> None:
        # The Messages tab sends the same event with tab "messages": nothing to publish.
        user = event.get("user")
        if event.get("tab", "home") == "home" and isinstance(user, str) and user:
            self._home.opened(user)

    def _board_reader(self) -> BoardReader:
        if self._reader is None:
            raise RuntimeError("the Slack front end is not started")
        return self._reader

    async def _tell(self, payload: BlockActions, text: str) -> None:
        """Answer the presser of a button only they see (on the Home tab: on top of it)."""
        if payload.on_home or payload.channel is None:
            self._home.note(payload.user.id, text)
            return
        thread = payload.message.thread_ts if payload.message else None
        await self._answer_click(payload, payload.channel.id, payload.user.id, thread, text)

    # --- helpers -------------------------------------------------------------

    def _names(self) -> frozenset[str]:
        """The running registry's command names (a DM's first word may name one)."""
        return frozenset(spec.name for spec in self._runtime_or_fail().registry.catalog)

    async def _record(self, inbound: Inbound) -> Handled | None:
        """Hand one message to the gateway; None if that outlasts the ack budget."""
        task = self._spawn(self._runtime_or_fail().gateway.handle(inbound))
        try:
            return await asyncio.wait_for(asyncio.shield(task), ACK_BUDGET_S)
        except TimeoutError:
            log.warning("recording Slack message %s is slow; acking first", inbound.message_id)
            return None

    async def _ephemeral(self, inbound: Inbound, text: str) -> None:
        await self._ephemeral_to(inbound.chat_id, inbound.user_id, inbound.thread_id, text)

    async def _ephemeral_to(self, channel: str, user: str, thread: str | None, text: str) -> None:
        try:
            await self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread
            )
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            log.warning("could not tell Slack user %s: %s", user, exc)

    async def _notify_presser(self, payload: BlockActions, inbound: Inbound, notice: str) -> None:
        await self._answer_click(
            payload, inbound.chat_id, inbound.user_id, inbound.thread_id, notice
        )

    async def _answer_click(
        self, payload: BlockActions, channel: str, user: str, thread: str | None, notice: str
    ) -> None:
        if payload.response_url is None:
            await self._ephemeral_to(channel, user, thread, notice)
            return
        try:
            await AsyncWebhookClient(payload.response_url).send_dict(
                {"response_type": "ephemeral", "replace_original": False, "text": notice}
            )
        except (OSError, TimeoutError, SlackClientError) as exc:
            log.warning("could not answer the click of %s: %s", user, exc)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _runtime_or_fail(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the Slack front end is not started")
        return self._runtime


def _now() -> datetime:
    return datetime.now(UTC)


def describe(settings: Settings) -> str:
    """One line saying how Slack is set up (for ``soloops doctor``); no network."""
    slack = settings.slack
    mode = (
        "Socket Mode"
        if slack.socket_mode
        else f"HTTP mode on http://{settings.http.host}:{settings.http.port}{EVENTS_PATH}"
    )
    who = f"{len(slack.operators)} operator(s)"
    return f"{mode}, {who}, API {slack.api_base_url}"
