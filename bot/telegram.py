"""The Telegram front end, on python-telegram-bot.

    getUpdates (long polling) | webhook  ->  to_inbound  ->  Gateway.handle
    outbox  ->  TelegramSender  ->  sendMessage / editMessageText / sendPhoto / sendDocument
    a queued message  ->  sendChatAction "typing" (beside it, best effort)

Forum topics: a reply goes to the topic its message came from; the General topic is
thread 1 inside soloops, which sends omit (Telegram refuses it) and chat actions keep
(see :func:`bot.telegram_render.message_thread`).

Polling is our own small loop over getUpdates rather than PTB's Updater: the offset
that confirms an update to Telegram only moves past it once the gateway has stored
it, so a crash between fetching and storing loses nothing (Telegram delivers it
again, and the gateway drops the copy by update id). Webhook mode is served from
soloops's own HTTP server (not PTB's Updater, which answers 200 before anything is
stored): the route checks ``X-Telegram-Bot-Api-Secret-Token`` (403 otherwise), stores
the update through the gateway and only then answers 200; a failure to store answers
503, so Telegram delivers the update again.

What can go wrong with one update, and what the loop does:

- it cannot be stored (disk full, database locked): it is held, never confirmed;
  the loop retries it on the :class:`~agents.backoff.Backoff` schedule, logs once at
  error level, tells the operators once by a direct message (no disk needed) if it
  lasts beyond a few attempts, and
  :attr:`TelegramFrontEnd.health` turns unhealthy. When a store works again the held
  update and every later one go through in order, and the outage is recorded as a
  ``telegram.storage_failed`` event.
- it is malformed (see :mod:`bot.telegram_updates`): logged (one line), recorded as
  ``update.malformed``, and skipped: the offset moves past it, it can never be read.
- handling it fails otherwise (a bug): retried a few times, then recorded as
  ``update.failed`` and skipped, so one poisoned update cannot stop polling.

Raw updates are fetched as JSON (``do_api_request``), not through
``Bot.get_updates``, which parses the whole batch at once: one malformed update
would fail the batch every time it is delivered.

Replies never go straight to Telegram: agents and the gateway write them to the
outbox, which calls :class:`TelegramSender` and retries what failed for a reason that
can pass (network, 5xx, 429 ``retry_after``). The one exception is the short refusal
a stranger gets: it is no reply to an operator and is not worth keeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import sqlite3
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from telegram import BotCommand, ReplyParameters, Update
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from agents.backoff import Backoff
from agents.replies import Reply
from agents.voice_port import AudioRef, AudioUnavailable
from bot.attachments import read_attachment
from bot.gateway import Outcome
from bot.http import HttpServer, read_body
from bot.manifest import telegram_menu
from bot.outbox import Delivery, DeliveryError
from bot.telegram_render import (
    CAPTION_LIMIT,
    PLATFORM,
    action_thread,
    keyboard,
    message_ref,
    message_thread,
    parse_ref,
    refusal,
    render,
    reply_target,
    to_inbound,
    utf16_len,
)
from bot.telegram_updates import confirmable_id, preview, update_problem
from config import ConfigError, HttpSettings, TelegramSettings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
READY_WAIT_S = 5.0
MAX_UPDATE_ATTEMPTS = 5  # a bug (not storage) this often on one update: skip it, loudly
POLL_BACKOFF = Backoff(base_s=1.0, cap_s=60.0)
NOTIFY_AFTER_ATTEMPTS = 3  # storage failing this often on one update: tell the operators
READ_SLACK_S = 10.0  # read timeout beyond the long poll's own
NOTHING_TO_DO = "Nothing to do: this button carries no action."
STORAGE_DOWN = (
    "soloops cannot store new messages right now ({error}). Nothing is lost: they wait "
    "at Telegram and are answered in order once storing works again. Free disk space "
    "where soloops keeps its data."
)
STORAGE_BACK = "soloops can store messages again; the ones that waited are being answered."
# What failing storage raises: SQLite's errors (SQLITE_FULL, SQLITE_BUSY...) and the OS's.
STORAGE_ERRORS = (sqlite3.Error, OSError)


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the Telegram front end takes updates (for a ``/healthz``).

    ``problem`` says what is wrong; ``since`` when it started; ``attempts`` how often
    the held update has been tried.
    """

    healthy: bool = True
    problem: str = ""
    since: datetime | None = None
    attempts: int = 0


class _Hold:
    """The update could not be stored: do not confirm it."""


HOLD = _Hold()
REFUSED_MEMORY = 10_000  # strangers remembered so each gets one refusal per run
CONNECT_ATTEMPTS = 5  # getMe tries at start, 1+2+4+8 s apart
RATE_LIMIT_RETRIES = 1  # in-process retries of a 429; the outbox is the durable retry
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024


def webhook_route(settings: TelegramSettings) -> str:
    """The path the webhook is served at on soloops's HTTP server (``/telegram``)."""
    return "/" + settings.webhook_path.strip("/")


def retry_seconds(exc: RetryAfter) -> float:
    """The wait a 429 asks for, whichever type PTB hands out."""
    with warnings.catch_warnings():
        # PTB 22 is moving retry_after from int to timedelta and warns on the int form.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def delivery_error(exc: TelegramError) -> DeliveryError:
    """Translate a Bot API failure: worth retrying, or refused for good."""
    if isinstance(exc, RetryAfter):
        wait = retry_seconds(exc)
        return DeliveryError(f"Telegram rate limit: retry after {wait:g} s", retry_after=wait)
    if isinstance(exc, ChatMigrated):
        return DeliveryError(
            f"the chat became a supergroup with id {exc.new_chat_id}", permanent=True
        )
    if isinstance(exc, BadRequest | Forbidden):  # BadRequest before NetworkError: a subclass
        return DeliveryError(f"Telegram refused the message: {exc.message}", permanent=True)
    if isinstance(exc, TimedOut | NetworkError):
        return DeliveryError(f"Telegram unreachable: {exc.message}")
    return DeliveryError(f"Telegram error: {exc.message}")


def fits_caption(chunks: list[str], reply: Reply) -> bool:
    """Whether the reply's text goes as the caption of its first file (short, no buttons)."""
    return (
        bool(reply.attachments)
        and not reply.buttons
        and len(chunks) == 1
        and utf16_len(chunks[0]) <= CAPTION_LIMIT
    )


class TelegramSender:
    """Puts outbox replies into Telegram chats, as replies to the message that asked."""

    platform = PLATFORM

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self._app = app
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()

    def open(self) -> None:
        """The bot is connected: deliver."""
        self._ready.set()

    async def close(self) -> None:
        """Stop delivering; wait for a send under way (the rest stays in the outbox)."""
        self._ready.clear()
        async with self._lock:
            pass

    async def send(self, delivery: Delivery) -> str | None:
        """Send (or, for a decided card, edit) one reply; return ``chat_id:message_id``."""
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), READY_WAIT_S)
            except TimeoutError:
                raise DeliveryError("Telegram is not connected", retry_after=READY_WAIT_S) from None
        async with self._lock:
            if not self._ready.is_set():
                raise DeliveryError("Telegram is disconnecting", retry_after=READY_WAIT_S)
            try:
                if delivery.replaces_ref is not None:
                    edited = await self._edit(delivery, delivery.replaces_ref)
                    if edited is not None:
                        return edited
                return await self._send(delivery)
            except TelegramError as exc:
                raise delivery_error(exc) from exc

    async def _send(self, delivery: Delivery) -> str:
        row, reply = delivery.row, delivery.reply
        chat_id = int(row.chat_id)
        thread = message_thread(row.thread_id)  # none for the General topic
        target = reply_target(row.reply_to)
        answering = ReplyParameters(target, allow_sending_without_reply=True) if target else None
        chunks = render(reply, headline=bool(reply.buttons) or delivery.replaces_ref is not None)
        files = [
            (attachment, await read_attachment(attachment)) for attachment in reply.attachments
        ]
        caption = chunks[0] if fits_caption(chunks, reply) else None
        # Pieces an earlier attempt delivered are not sent again (see Delivery.progress).
        done = min(row.pieces_sent, len(chunks))
        ref = row.sent_ref or ""
        if caption is None:
            for index, chunk in enumerate(chunks):
                if index < done:
                    continue
                last = index == len(chunks) - 1
                sent = await self._app.bot.send_message(
                    chat_id,
                    chunk,
                    parse_mode=ParseMode.HTML,
                    message_thread_id=thread,
                    reply_parameters=answering if index == 0 else None,
                    reply_markup=keyboard(reply.buttons) if last else None,
                )
                ref = message_ref(chat_id, sent.message_id)
                answering = None
                if delivery.progress is not None and len(chunks) > 1:
                    await delivery.progress(index + 1, ref)
        for index, (attachment, content) in enumerate(files):
            # A short text rides on the first file as its caption; a long one went before.
            text = caption if index == 0 else None
            if attachment.kind == "photo":
                sent = await self._app.bot.send_photo(
                    chat_id,
                    content,
                    caption=text,
                    parse_mode=ParseMode.HTML if text else None,
                    filename=attachment.filename,
                    message_thread_id=thread,
                    reply_parameters=answering,
                )
            else:
                sent = await self._app.bot.send_document(
                    chat_id,
                    content,
                    caption=text,
                    parse_mode=ParseMode.HTML if text else None,
                    filename=attachment.filename,
                    message_thread_id=thread,
                    reply_parameters=answering,
                )
            answering = None
            ref = ref or message_ref(chat_id, sent.message_id)
        return ref

    async def _edit(self, delivery: Delivery, ref: str) -> str | None:
        """Edit the card in place; None means send the update as a new message instead."""
        where = parse_ref(ref)
        if where is None:
            return None
        chat_id, message_id = where
        chunks = render(delivery.reply, headline=True)
        text = chunks[0] if len(chunks) == 1 else chunks[0].rstrip() + "\n…"
        try:
            await self._app.bot.edit_message_text(
                text,
                chat_id=chat_id,
                message_id=message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(delivery.reply.buttons),
            )
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return ref  # a retried edit that had gone through
            log.info("could not edit Telegram message %s (%s); sending a new one", ref, exc)
            return None
        return ref


class TelegramFrontEnd:
    """soloops on Telegram: polling or webhook in, outbox out."""

    platform = PLATFORM

    def __init__(
        self,
        settings: TelegramSettings,
        server: HttpServer | None = None,
        *,
        backoff: Backoff = POLL_BACKOFF,
    ) -> None:
        """Set up Telegram; in webhook mode its route goes on ``server`` (shared, started
        and stopped by its owner) or, without one, on a server of its own on
        ``webhook_listen:webhook_port``."""
        if settings.token is None:
            raise ConfigError("Telegram needs a bot token: set SOLOOPS_TELEGRAM__TOKEN.")
        self._settings = settings
        builder = (
            ApplicationBuilder()
            .token(settings.token.get_secret_value())
            .base_url(settings.base_url)
            .base_file_url(settings.base_file_url)
            .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
            .job_queue(None)  # soloops schedules its own work; no second scheduler
            .updater(None)  # polling is our own loop; the webhook is our own route
        )
        self._app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._sender = TelegramSender(self._app)
        self._operators = frozenset(str(user) for user in settings.operators)
        self._runtime: Runtime | None = None
        self._refused: set[str] = set()
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._started = False
        self._backoff = backoff
        self._health = Health()
        self._seen_malformed: set[str] = set()
        self._server: HttpServer | None = None
        self._owns_server = False
        self._typing: set[asyncio.Task[None]] = set()
        if settings.mode == "webhook":
            self._owns_server = server is None
            self._server = server or HttpServer(
                HttpSettings(host=settings.webhook_listen, port=settings.webhook_port),
                label="Telegram webhook mode",
            )
            self._server.add_route("POST", webhook_route(settings), self._serve_webhook)

    @property
    def health(self) -> Health:
        """Healthy, or what keeps updates from being stored (a later /healthz reads it)."""
        return self._health

    def health_state(self) -> tuple[bool, str]:
        """``(ok, detail)`` for ``/healthz``: the mode when healthy, else the problem."""
        if not self._health.healthy:
            return False, self._health.problem
        if self._settings.mode == "webhook":
            return True, f"webhook at {webhook_route(self._settings)}"
        return True, "polling"

    @property
    def address(self) -> tuple[str, int] | None:
        """Where webhook mode listens, once its server has started (None when polling)."""
        return self._server.address if self._server is not None else None

    @property
    def sender(self) -> TelegramSender:
        return self._sender

    @property
    def operators(self) -> frozenset[str]:
        return self._operators

    @property
    def application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        """The PTB application (tests read its bot)."""
        return self._app

    async def start(self, runtime: Runtime) -> None:
        """Connect (getMe), then take updates by polling or webhook.

        Raises:
            ConfigError: Telegram refused the token.
        """
        self._runtime = runtime
        runtime.audio.register(PLATFORM, self.download_audio)
        await self._connect()
        await self._app.start()
        self._started = True
        username = self._app.bot.username
        log.info("Telegram: connected as @%s (%s mode)", username, self._settings.mode)
        if not self._operators:
            log.warning(
                "Telegram: no operators configured. Send any message to @%s: it answers with "
                "your user id; then set SOLOOPS_TELEGRAM__OPERATORS=[<id>] and restart.",
                username,
            )
        await self._set_commands()
        if self._settings.mode == "webhook":
            await self._start_webhook()
            self._health = Health()
        else:
            await self._app.bot.delete_webhook()
            self._stopping.clear()
            self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
            self._health = Health()
        self._sender.open()

    async def download_audio(self, ref: AudioRef) -> bytes:
        """A voice note's audio: getFile, then the download from ``base_file_url``."""
        try:
            file = await self._app.bot.get_file(ref.file_id)
            return bytes(await file.download_as_bytearray())
        except TelegramError as exc:
            raise AudioUnavailable(
                f"Telegram would not hand over the audio: {exc.message}"
            ) from exc

    async def _connect(self) -> None:
        """getMe, retrying a short outage; a refused token or a lasting outage is fatal."""
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                await self._app.initialize()
                return
            except InvalidToken:
                await self._app.bot.shutdown()  # close the HTTP client the failed start opened
                # Not PTB's message: it quotes the token ("The token `123:...` was rejected").
                raise ConfigError(
                    "Telegram refused the bot token. Check SOLOOPS_TELEGRAM__TOKEN against "
                    "the token BotFather gave you."
                ) from None
            except TelegramError as exc:
                await self._app.bot.shutdown()
                if attempt == CONNECT_ATTEMPTS:
                    raise ConfigError(
                        f"Could not reach the Telegram Bot API at {self._settings.base_url} "
                        f"({exc}). Check the network, or SOLOOPS_TELEGRAM__BASE_URL if you run "
                        "your own Bot API server."
                    ) from None
                wait = self._backoff.delay(attempt)
                log.warning("Telegram: getMe failed (%s); retrying in %.0f s", exc, wait)
                await asyncio.sleep(wait)

    async def stop(self) -> None:
        """Stop taking updates, finish the one in hand, disconnect."""
        await self._sender.close()
        self._stopping.set()
        if self._poller is not None:
            await self._poller
            self._poller = None
        if self._owns_server and self._server is not None:
            await self._server.stop()
        for typing in list(self._typing):
            typing.cancel()
        await asyncio.gather(*self._typing, return_exceptions=True)
        if self._started:
            await self._app.stop()
            self._started = False
        await self._app.shutdown()

    async def _start_webhook(self) -> None:
        """Listen (our own server, when not shared), then tell Telegram where to post."""
        settings = self._settings
        secret = settings.webhook_secret
        assert secret is not None  # the settings model insists on it in webhook mode
        if self._owns_server and self._server is not None:
            await self._server.start()  # a busy port: ConfigError naming the port
        await self._app.bot.set_webhook(
            url=settings.webhook_url,
            secret_token=secret.get_secret_value(),
            allowed_updates=ALLOWED_UPDATES,
        )
        log.info("Telegram: webhook set to %s", settings.webhook_url)

    async def _serve_webhook(self, request: web.Request) -> web.Response:
        """One update from Telegram: check the secret, store it, then answer 200."""
        if self._runtime is None or not self._started:  # a shared server can start first
            return web.Response(status=503, text="soloops is starting; Telegram will retry")
        secret = self._settings.webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if secret is None or not hmac.compare_digest(
            given.encode(), secret.get_secret_value().encode()
        ):
            log.warning("Telegram webhook: a request without the right secret token (403)")
            return web.Response(status=403, text="wrong or missing secret token")
        try:
            data = json.loads(await read_body(request, MAX_UPDATE_BYTES))
            update = Update.de_json(data, self._app.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("Telegram webhook: an unreadable update (%s)", type(exc).__name__)
            return web.Response(status=400, text="not a Telegram update")
        try:
            await self._process(update)
        except Exception as exc:  # not stored: 5xx, and Telegram delivers it again
            held = self._health
            self._health = Health(
                False,
                f"could not store an update ({type(exc).__name__})",
                held.since or datetime.now(UTC),
                held.attempts + 1,
            )
            log.error(
                "Telegram: could not store update %d (%s); Telegram will retry",
                update.update_id,
                type(exc).__name__,
            )
            return web.Response(status=503, text="not stored; retry")
        if not self._health.healthy:
            self._health = Health()
        return web.Response(status=200)

    async def _set_commands(self) -> None:
        """Fill Telegram's command menu from the running registry (best effort)."""
        menu = telegram_menu(self._runtime_or_fail().registry)
        commands = [BotCommand(name, description) for name, description in menu]
        try:
            await self._app.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.info("Telegram: could not set the command menu: %s", exc)

    async def _poll(self) -> None:
        """Long-poll getUpdates; confirm an update only once it is stored (or unreadable)."""
        offset = 0
        failures = 0
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                fetch = asyncio.ensure_future(self._fetch(offset))
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    return
                try:
                    batch = fetch.result()
                except TimedOut:
                    continue  # the long poll outlived the connection: ask again
                except TelegramError as exc:
                    failures += 1
                    await self._poll_failed(exc, failures)
                    continue
                failures = 0
                unconfirmable = False
                for raw in batch:
                    taken = await self._take(raw)
                    if isinstance(taken, _Hold):
                        break  # not stored: ask for it again, from this offset
                    if taken is None:
                        unconfirmable = True  # only a later update's id confirms it
                    else:
                        offset = max(offset, taken + 1)  # a redelivery is older
                if unconfirmable:
                    # Telegram hands it out again until a later update arrives: not in a
                    # tight loop.
                    failures += 1
                    await self._wait(self._backoff.delay(failures))
        finally:
            stop.cancel()

    async def _fetch(self, offset: int) -> list[Any]:
        """One getUpdates call, unparsed: each update is checked on its own."""
        timeout = self._settings.poll_timeout_s
        with warnings.catch_warnings():
            # do_api_request warns that get_updates exists: it parses the whole batch.
            warnings.filterwarnings("ignore", "Please use 'Bot.get_updates'", PTBUserWarning)
            result = await self._app.bot.do_api_request(
                "get_updates",
                api_kwargs={
                    "offset": offset,
                    "timeout": timeout,
                    "allowed_updates": ALLOWED_UPDATES,
                },
                read_timeout=timeout + READ_SLACK_S,
            )
        if not isinstance(result, list):
            raise NetworkError(f"getUpdates answered a {type(result).__name__}, not a list")
        return result

    async def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopping; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _poll_failed(self, exc: TelegramError, failures: int) -> None:
        retry_after = retry_seconds(exc) if isinstance(exc, RetryAfter) else None
        wait = self._backoff.delay(failures, retry_after)
        if isinstance(exc, Conflict):
            log.error(
                "Telegram: another program is taking this bot's updates (%s). Stop it, "
                "or give soloops its own bot token.",
                exc.message,
            )
        elif isinstance(exc, InvalidToken):
            log.error("Telegram: the token was refused: check SOLOOPS_TELEGRAM__TOKEN.")
        elif not isinstance(exc, RetryAfter):
            log.warning("Telegram: getUpdates failed (%s); retrying in %.0f s", exc, wait)
        await self._wait(wait)

    async def _take(self, raw: object) -> int | _Hold | None:
        """Take one raw update: the id that confirms it, None if it has none, or HOLD."""
        update_id = confirmable_id(raw)
        problem = update_problem(raw)
        update: Update | None = None
        if problem is None:
            try:
                update = Update.de_json(raw, self._app.bot)  # type: ignore[arg-type]  # checked a dict
            except Exception as exc:  # any parse failure: malformed
                problem = f"unreadable ({type(exc).__name__}: {exc})"
        if update is None:
            stored = await self._store(
                update_id, lambda: self._record_malformed(raw, update_id, problem or "")
            )
            return update_id if stored else HOLD
        return (
            update.update_id
            if await self._store(update_id, lambda: self._process(update))
            else HOLD
        )

    async def _store(self, update_id: int | None, work: Callable[[], Awaitable[None]]) -> bool:
        """Run ``work`` until it is stored; False when stopping first (do not confirm).

        Storage failures are retried as long as it takes; any other failure is a bug
        that this one update triggers, so after a few tries it is recorded and skipped.
        """
        attempt = 0
        while True:
            try:
                await work()
            except STORAGE_ERRORS as exc:
                attempt += 1
                await self._storage_failed(exc, update_id, attempt)
            except Exception:
                attempt += 1
                if attempt >= MAX_UPDATE_ATTEMPTS:
                    log.exception(
                        "Telegram: update %s failed %d times; skipping it", update_id, attempt
                    )
                    await self._record_failed(update_id, attempt)
                    return True
                log.exception("Telegram: update %s failed; retrying", update_id)
            else:
                if not self._health.healthy:
                    await self._storage_recovered()
                return True
            if await self._wait(self._backoff.delay(attempt)):
                return False

    async def _storage_failed(self, exc: Exception, update_id: int | None, attempt: int) -> None:
        """Say once per outage that updates are held; later failures only count."""
        if not self._health.healthy:
            self._health = Health(False, self._health.problem, self._health.since, attempt)
            log.debug("Telegram: update %s still cannot be stored (%s)", update_id, exc)
            if attempt == NOTIFY_AFTER_ATTEMPTS:  # not for a moment's lock: a lasting outage
                await self._tell_operators(STORAGE_DOWN.format(error=str(exc)))
            return
        problem = f"{type(exc).__name__}: {exc}"
        self._health = Health(False, problem, datetime.now(UTC), attempt)
        log.error(
            "Telegram: cannot store update %s (%s). It is held at Telegram, not confirmed; "
            "retrying until storing works again (free disk space if it is full).",
            update_id,
            problem,
        )

    async def _storage_recovered(self) -> None:
        held = self._health
        told = held.attempts >= NOTIFY_AFTER_ATTEMPTS
        self._health = Health()
        now = datetime.now(UTC)
        log.warning("Telegram: storing works again after %d attempt(s)", held.attempts)
        try:
            await self._runtime_or_fail().events.record(
                "telegram.storage_failed",
                actor="telegram",
                subject="storage",
                payload={
                    "error": held.problem[:300],
                    "since": held.since.isoformat() if held.since else "",
                    "recovered_at": now.isoformat(),
                    "attempts": held.attempts,
                },
            )
        except STORAGE_ERRORS as exc:  # the update went in; the note about it can wait no more
            log.error("Telegram: could not record the storage outage: %s", exc)
        if told:
            await self._tell_operators(STORAGE_BACK)

    async def _tell_operators(self, text: str) -> None:
        """A direct message to each operator's private chat: no storage involved."""
        for operator in sorted(self._operators):
            try:
                await self._app.bot.send_message(int(operator), text)
            except TelegramError as exc:
                log.info("Telegram: could not tell operator %s: %s", operator, exc)

    async def _record_malformed(self, raw: object, update_id: int | None, problem: str) -> None:
        shown = preview(raw)
        first_time = shown not in self._seen_malformed
        if first_time:
            log.warning("Telegram: skipping a malformed update %s: %s", update_id, problem)
            await self._runtime_or_fail().events.record(
                "update.malformed",
                actor="telegram",
                subject=f"update:{update_id}" if update_id is not None else "update",
                payload={"update_id": update_id, "problem": problem[:300], "update": shown},
            )
            if len(self._seen_malformed) >= REFUSED_MEMORY:
                self._seen_malformed.clear()
            self._seen_malformed.add(shown)

    async def _record_failed(self, update_id: int | None, attempts: int) -> None:
        try:
            await self._runtime_or_fail().events.record(
                "update.failed",
                actor="telegram",
                subject=f"update:{update_id}",
                payload={"update_id": update_id, "attempts": attempts},
            )
        except Exception:  # best effort: the log line says it
            log.exception("Telegram: could not record the skipped update %s", update_id)

    def _runtime_or_fail(self) -> Runtime:
        runtime = self._runtime
        assert runtime is not None, "start() first"
        return runtime

    async def _process(self, update: Update) -> None:
        """One update through the gateway, then the answers Telegram expects at once."""
        runtime = self._runtime
        assert runtime is not None, "start() first"
        inbound = to_inbound(update, self._app.bot.username, datetime.now(UTC))
        if inbound is None:
            if update.callback_query is not None:  # a button without data: nothing to run
                try:
                    await update.callback_query.answer(NOTHING_TO_DO)
                except TelegramError as exc:
                    log.info("Telegram: could not answer a button press: %s", exc)
            return
        handled = await runtime.gateway.handle(inbound)
        query = update.callback_query
        if query is not None and handled.outcome is not Outcome.DUPLICATE:
            try:
                await query.answer(handled.notice or None)
            except TelegramError as exc:  # a stale query (over 15 min); the card still changes
                log.info("Telegram: could not answer a button press: %s", exc)
        if handled.outcome is Outcome.REFUSED:
            await self._refuse(inbound.user_id, inbound.chat_id, query is None)
        if handled.outcome is Outcome.QUEUED and query is None:
            # Beside the update, not before confirming it: a slow or rate-limited chat
            # action never holds the next update.
            typing = asyncio.create_task(
                self._type(int(inbound.chat_id), action_thread(inbound.thread_id)),
                name="telegram-typing",
            )
            self._typing.add(typing)
            typing.add_done_callback(self._typing.discard)

    async def _type(self, chat_id: int, thread: int | None) -> None:
        """Show "typing…" where the answer will appear (best effort)."""
        try:
            await self._app.bot.send_chat_action(
                chat_id, ChatAction.TYPING, message_thread_id=thread
            )
        except TelegramError as exc:
            log.debug("Telegram: no typing action for %s: %s", chat_id, exc)

    async def _refuse(self, user_id: str, chat_id: str, send: bool) -> None:
        """Tell a stranger no, once per run; no data, no command ran."""
        configured = bool(self._operators)
        if not configured:
            log.warning(
                "Telegram: user %s is not an operator. To let them in: "
                "SOLOOPS_TELEGRAM__OPERATORS=[%s]",
                user_id,
                user_id,
            )
        if not send or user_id in self._refused:
            return
        if len(self._refused) >= REFUSED_MEMORY:
            self._refused.clear()
        self._refused.add(user_id)
        try:
            await self._app.bot.send_message(int(chat_id), refusal(user_id, configured))
        except TelegramError as exc:
            log.info("Telegram: could not send a refusal to %s: %s", user_id, exc)
