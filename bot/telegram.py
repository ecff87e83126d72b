"""The Telegram front end, on python-telegram-bot.

    getUpdates (long polling) | webhook  ->  to_inbound  ->  Gateway.handle
    outbox  ->  TelegramSender  ->  sendMessage / editMessageText / sendPhoto / sendDocument

Polling is our own small loop over ``Bot.get_updates`` rather than PTB's Updater: the
offset that confirms an update to Telegram only moves past it once the gateway has
stored it, so a crash between fetching and storing loses nothing (Telegram delivers
it again, and the gateway drops the copy by update id). Webhook mode uses PTB's
Updater, whose server checks ``X-Telegram-Bot-Api-Secret-Token``.

Replies never go straight to Telegram: agents and the gateway write them to the
outbox, which calls :class:`TelegramSender` and retries what failed for a reason that
can pass (network, 5xx, 429 ``retry_after``). The one exception is the short refusal
a stranger gets: it is no reply to an operator and is not worth keeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from telegram import BotCommand, ReplyParameters, Update
from telegram.constants import ParseMode
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
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.warnings import PTBDeprecationWarning

from agents.replies import Reply
from bot.attachments import read_attachment
from bot.gateway import Outcome
from bot.intents import CATALOG
from bot.outbox import Delivery, DeliveryError
from bot.telegram_render import (
    CAPTION_LIMIT,
    PLATFORM,
    keyboard,
    message_ref,
    parse_ref,
    refusal,
    render,
    reply_target,
    to_inbound,
    utf16_len,
)
from config import ConfigError, TelegramSettings

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "callback_query"]
READY_WAIT_S = 5.0
MAX_UPDATE_ATTEMPTS = 5  # an update the gateway cannot take this often is skipped, loudly
REFUSED_MEMORY = 10_000  # strangers remembered so each gets one refusal per run
CONNECT_ATTEMPTS = 5  # getMe tries at start, 1+2+4+8 s apart
RATE_LIMIT_RETRIES = 1  # in-process retries of a 429; the outbox is the durable retry


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
        thread = int(row.thread_id) if row.thread_id else None
        target = reply_target(row.reply_to)
        answering = ReplyParameters(target, allow_sending_without_reply=True) if target else None
        chunks = render(reply, headline=bool(reply.buttons) or delivery.replaces_ref is not None)
        files = [
            (attachment, await read_attachment(attachment)) for attachment in reply.attachments
        ]
        caption = chunks[0] if fits_caption(chunks, reply) else None
        ref = ""
        if caption is None:
            for index, chunk in enumerate(chunks):
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

    def __init__(self, settings: TelegramSettings) -> None:
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
        )
        if settings.mode == "polling":
            builder = builder.updater(None)
        self._app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._app.add_handler(TypeHandler(Update, self._on_webhook_update))
        self._app.add_error_handler(self._on_error)
        self._sender = TelegramSender(self._app)
        self._operators = frozenset(str(user) for user in settings.operators)
        self._runtime: Runtime | None = None
        self._refused: set[str] = set()
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._started = False

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
        else:
            await self._app.bot.delete_webhook()
            self._stopping.clear()
            self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
        self._sender.open()

    async def _connect(self) -> None:
        """getMe, retrying a short outage; a refused token or a lasting outage is fatal."""
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                await self._app.initialize()
                return
            except InvalidToken as exc:
                await self._app.bot.shutdown()  # close the HTTP client the failed start opened
                raise ConfigError(
                    f"Telegram refused the bot token ({exc.message}). Check "
                    "SOLOOPS_TELEGRAM__TOKEN against the token BotFather gave you."
                ) from None
            except TelegramError as exc:
                await self._app.bot.shutdown()
                if attempt == CONNECT_ATTEMPTS:
                    raise ConfigError(
                        f"Could not reach the Telegram Bot API at {self._settings.base_url} "
                        f"({exc}). Check the network, or SOLOOPS_TELEGRAM__BASE_URL if you run "
                        "your own Bot API server."
                    ) from None
                wait = 2.0 ** (attempt - 1)
                log.warning("Telegram: getMe failed (%s); retrying in %.0f s", exc, wait)
                await asyncio.sleep(wait)

    async def stop(self) -> None:
        """Stop taking updates, finish the one in hand, disconnect."""
        await self._sender.close()
        self._stopping.set()
        if self._poller is not None:
            await self._poller
            self._poller = None
        if self._app.updater is not None and self._app.updater.running:
            await self._app.updater.stop()
        if self._started:
            await self._app.stop()
            self._started = False
        await self._app.shutdown()

    async def _start_webhook(self) -> None:
        settings = self._settings
        secret = settings.webhook_secret
        assert secret is not None  # the settings model insists on it in webhook mode
        updater = self._app.updater
        assert updater is not None
        await updater.start_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=settings.webhook_path,
            webhook_url=settings.webhook_url,
            secret_token=secret.get_secret_value(),
            allowed_updates=ALLOWED_UPDATES,
        )

    async def _set_commands(self) -> None:
        """Fill Telegram's command menu from the catalog (best effort)."""
        commands = [BotCommand(info.name, info.summary[:256]) for info in CATALOG]
        try:
            await self._app.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.info("Telegram: could not set the command menu: %s", exc)

    async def _poll(self) -> None:
        """Long-poll getUpdates; confirm an update only once the gateway has stored it."""
        offset = 0
        backoff = 1.0
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                fetch = asyncio.ensure_future(
                    self._app.bot.get_updates(
                        offset=offset,
                        timeout=self._settings.poll_timeout_s,
                        allowed_updates=ALLOWED_UPDATES,
                    )
                )
                await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    return
                try:
                    updates = fetch.result()
                except TimedOut:
                    continue  # the long poll outlived the connection: ask again
                except TelegramError as exc:
                    backoff = await self._poll_failed(exc, backoff)
                    continue
                backoff = 1.0
                for update in updates:
                    if not await self._take(update):
                        break  # not stored: ask for it again, from this offset
                    offset = max(offset, update.update_id + 1)  # a redelivery is older
        finally:
            stop.cancel()

    async def _poll_failed(self, exc: TelegramError, backoff: float) -> float:
        if isinstance(exc, RetryAfter):
            wait = retry_seconds(exc)
        else:
            wait = backoff
            if isinstance(exc, Conflict):
                log.error(
                    "Telegram: another program is taking this bot's updates (%s). Stop it, "
                    "or give soloops its own bot token.",
                    exc.message,
                )
            elif isinstance(exc, InvalidToken):
                log.error("Telegram: the token was refused: check SOLOOPS_TELEGRAM__TOKEN.")
            else:
                log.warning("Telegram: getUpdates failed (%s); retrying in %.0f s", exc, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), wait)
        return min(60.0, backoff * 2)

    async def _take(self, update: Update) -> bool:
        """Hand one update to the gateway, retrying storage failures a few times.

        Returns False when it could not be stored and polling should ask for it again.
        """
        for attempt in range(1, MAX_UPDATE_ATTEMPTS + 1):
            try:
                await self._process(update)
            except Exception:
                if attempt == MAX_UPDATE_ATTEMPTS:
                    log.exception(
                        "Telegram: update %d failed %d times; skipping it",
                        update.update_id,
                        attempt,
                    )
                    return True
                log.exception("Telegram: update %d failed; retrying", update.update_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.5 * attempt)
                if self._stopping.is_set():
                    return False
            else:
                return True
        return True  # pragma: no cover - the loop returns

    async def _on_webhook_update(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update):
            await self._process(update)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("Telegram: handling an update failed", exc_info=context.error)

    async def _process(self, update: Update) -> None:
        """One update through the gateway, then the answers Telegram expects at once."""
        runtime = self._runtime
        assert runtime is not None, "start() first"
        inbound = to_inbound(update, self._app.bot.username, datetime.now(UTC))
        if inbound is None:
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
