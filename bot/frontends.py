"""Front ends: the chat platforms soloops runs on, started by ``soloops run``.

Each platform adapter (Telegram, Slack, ...) provides a :class:`FrontEnd`: its
outbox :class:`~bot.outbox.Sender`, its operator allowlist, and start/stop. Adding a
platform means one module in ``bot/`` and one line in :func:`configured_front_ends`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from config import Settings

if TYPE_CHECKING:
    from bot.http import HttpServer
    from bot.outbox import Sender
    from bot.runtime import Runtime


class FrontEnd(Protocol):
    """One chat platform, running inside soloops."""

    platform: str

    @property
    def sender(self) -> Sender:
        """Delivers this platform's replies from the outbox."""
        ...

    @property
    def operators(self) -> frozenset[str]:
        """The platform user ids allowed to command soloops."""
        ...

    async def start(self, runtime: Runtime) -> None:
        """Connect and start taking messages into ``runtime.gateway``."""
        ...

    async def stop(self) -> None:
        """Stop taking messages and disconnect."""
        ...


def configured_front_ends(settings: Settings, server: HttpServer | None = None) -> list[FrontEnd]:
    """The front ends whose settings are present (none: the console runs instead).

    Those that take requests over HTTP (Slack HTTP mode, Telegram webhook mode) put
    their routes on ``server``, the process's one HTTP server, when given.
    """
    front_ends: list[FrontEnd] = []
    if settings.telegram.configured:
        from bot.telegram import TelegramFrontEnd  # PTB loads only when Telegram runs

        front_ends.append(TelegramFrontEnd(settings.telegram, server))
    if settings.slack.bot_token is not None:
        from bot.slack import SlackFrontEnd  # slack-bolt loads only when Slack is configured

        front_ends.append(SlackFrontEnd(settings, server))
    return front_ends
