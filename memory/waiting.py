"""Waiting helpers that stay correct under cancellation."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_event(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever is first.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11, ``wait_for``
    can swallow a cancellation that arrives as the event is set, leaving a loop that
    was told to stop still running (and whoever awaits it hung).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
