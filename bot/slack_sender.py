"""Delivers outbox replies to Slack through the Web API.

- A new reply is ``chat.postMessage`` in its channel, in its thread when it has one; the
  returned ref is ``"<channel>:<ts>"``.
- A reply's files (a chart, an invoice PDF) follow it in the same conversation or
  thread, each uploaded with ``files_upload_v2`` (``files.getUploadURLExternal``, the
  upload POST, ``files.completeUploadExternal``), read from the home at every attempt.
- A reply that edits a card (``Delivery.replaces_ref``) is ``chat.update`` of that
  message with blocks that have no buttons.
- A reply to a slash command (thread :data:`~bot.slack_inbound.OPENS_THREAD`) first
  needs its thread: the sender posts the thread opener (who asked and what), records
  its ``ts`` as the inbound message's thread, and replies under it. Later replies to the
  same command (a card, its outcome) find that thread in the inbound log, across restarts.

Failures become :class:`~bot.outbox.DeliveryError` for the outbox to retry or give up:
429 waits for ``Retry-After``; 5xx, Slack's own transient errors and network errors are
retried with backoff; anything else (``channel_not_found``, ``invalid_auth``...) is
permanent and shows up as a failed delivery in ``/status``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import read_attachment
from bot.outbox import Delivery, DeliveryError
from bot.slack_blocks import render, thread_opener
from bot.slack_inbound import OPENS_THREAD, PLATFORM
from memory.inbound import InboundRepo
from memory.outbox import OutboxRow

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
HINTS = {
    "channel_not_found": "the bot cannot see this channel; invite it with /invite @soloops",
    "not_in_channel": "the bot is not in this channel; invite it with /invite @soloops",
    "is_archived": "the channel is archived",
    "invalid_auth": "Slack refused the bot token; check SOLOOPS_SLACK__BOT_TOKEN",
    "not_authed": "no bot token was sent; set SOLOOPS_SLACK__BOT_TOKEN",
    "token_revoked": "the bot token was revoked; reinstall the app and update "
    "SOLOOPS_SLACK__BOT_TOKEN",
    "account_inactive": "the bot token belongs to a deactivated app or user",
    "missing_scope": "the app lacks a scope; add it from slack-app-manifest.yml and reinstall",
    "message_not_found": "the message to edit is gone",
    "cant_update_message": "Slack does not let the bot edit that message",
    "msg_too_long": "the message is too long for Slack",
}


def delivery_error(status: int, error: str | None, retry_after: str | None) -> DeliveryError:
    """Classify one failed Slack call for the outbox."""
    code = error or f"HTTP {status}"
    if status == 429 or error == "ratelimited":
        wait = _seconds(retry_after)
        return DeliveryError(f"Slack rate limit ({code}); retrying in {wait:g} s", retry_after=wait)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return DeliveryError(f"Slack is having trouble ({code}); will retry")
    hint = HINTS.get(error or "", "see https://api.slack.com/methods for the error")
    return DeliveryError(f"Slack refused the message ({code}): {hint}", permanent=True)


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def split_ref(ref: str) -> tuple[str, str]:
    """``"<channel>:<ts>"`` -> (channel, ts)."""
    channel, _, ts = ref.partition(":")
    return channel, ts


class SlackSender:
    """The outbox :class:`~bot.outbox.Sender` for Slack."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._runtime: Runtime | None = None

    def bind(self, runtime: Runtime) -> None:
        """Give the sender the store it needs to open and find slash-command threads."""
        self._runtime = runtime

    async def send(self, delivery: Delivery) -> str | None:
        """Post or edit one reply; return ``"<channel>:<ts>"``."""
        text, blocks = render(delivery.reply)
        try:
            if delivery.replaces_ref is not None:
                channel, ts = split_ref(delivery.replaces_ref)
                await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
                return delivery.replaces_ref
            thread_ts = await self._thread_ts(delivery.row)
            # Read before posting: a file gone from the home fails the reply before any of it.
            files = [
                (attachment, await read_attachment(attachment))
                for attachment in delivery.reply.attachments
            ]
            response = await self._client.chat_postMessage(
                channel=delivery.row.chat_id, thread_ts=thread_ts, text=text, blocks=blocks
            )
            for attachment, content in files:
                # files_upload_v2: files.getUploadURLExternal, the upload POST, then
                # files.completeUploadExternal sharing it beside the text (same thread).
                await self._client.files_upload_v2(
                    channel=delivery.row.chat_id,
                    thread_ts=thread_ts,
                    file=content,
                    filename=attachment.filename,
                    title=attachment.filename,
                )
            return f"{response['channel']}:{response['ts']}"
        except SlackApiError as exc:
            response = exc.response
            raise delivery_error(
                response.status_code,
                response.get("error") if isinstance(response.data, dict) else None,
                response.headers.get("Retry-After"),
            ) from exc
        except SlackRequestError as exc:  # the upload POST itself was refused
            raise DeliveryError(f"Slack refused the file upload: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, SlackClientError) as exc:
            raise DeliveryError(f"could not reach Slack: {type(exc).__name__}: {exc}") from exc

    async def _thread_ts(self, row: OutboxRow) -> str | None:
        if row.thread_id != OPENS_THREAD:
            return row.thread_id
        if self._runtime is None:
            raise DeliveryError("the Slack front end is not started yet", retry_after=1.0)
        inbound = InboundRepo(self._runtime.store)
        asked = await inbound.get(PLATFORM, row.reply_to) if row.reply_to else None
        if asked is None:
            return None  # nothing to hang a thread from: reply in the channel
        if asked.thread_id not in (None, OPENS_THREAD):
            return asked.thread_id
        response = await self._client.chat_postMessage(
            channel=row.chat_id, text=thread_opener(asked.user_id, asked.text)
        )
        ts = str(response["ts"])
        # Shielded: once Slack has the opener, its ts must be kept, or a retry opens a second.
        await asyncio.shield(self._remember_thread(asked.message_id, str(response["channel"]), ts))
        return ts

    async def _remember_thread(self, message_id: str, channel: str, ts: str) -> None:
        assert self._runtime is not None
        runtime = self._runtime
        async with runtime.store.write() as tx:
            await InboundRepo(runtime.store).set_thread(tx, PLATFORM, message_id, ts)
            await runtime.events.append(
                tx,
                "slack.thread_opened",
                actor="outbox",
                subject=f"message:{PLATFORM}:{message_id}",
                payload={"channel": channel, "ts": ts},
            )
