"""Shared fixtures: real SQLite files in a temp dir, a running soloops, the console."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.console import ConsoleSender
from bot.inbound import Inbound
from bot.runtime import Runtime, open_runtime
from config import Settings
from memory.embedder import SentenceTransformerEmbedder, wait_for_loads
from memory.events import EventLog
from memory.store import Store
from tests.emulators.provider import Provider
from tests.emulators.telegram import TelegramEmulator


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Models still loading in background threads finish before the interpreter exits
    (a torch thread cut off at shutdown aborts the process, failing a green run)."""
    wait_for_loads()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's own SOLOOPS_* settings or data."""
    for name in list(os.environ):
        if name.startswith("SOLOOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SOLOOPS_HOME", str(tmp_path / "home"))
    return


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "test.db") as opened:
        yield opened


@pytest.fixture
def events(store: Store) -> EventLog:
    return EventLog(store)


@dataclass
class Chat:
    """A running soloops with the real console front end writing into a buffer."""

    runtime: Runtime
    out: io.StringIO
    counter: int = 0

    def inbound(self, text: str, *, message_id: str | None = None, user: str = "op") -> Inbound:
        self.counter += 1
        return Inbound(
            platform="console",
            message_id=message_id or f"m{self.counter}",
            chat_id="local",
            user_id=user,
            text=text,
            received_at=datetime.now(UTC),
        )

    async def say(self, text: str, **kwargs: str) -> str:
        """Send one line, wait for its work to settle, return what was printed for it."""
        start = len(self.out.getvalue())
        await self.runtime.gateway.handle(self.inbound(text, **kwargs))
        await self.runtime.settle()
        return self.out.getvalue()[start:]


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real model, shared by the whole session: it loads (in the background) once."""
    return SentenceTransformerEmbedder()


@pytest.fixture
async def chat(settings: Settings, embedder: SentenceTransformerEmbedder) -> AsyncIterator[Chat]:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        yield Chat(runtime, out)


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    """A loopback webhook receiver on 127.0.0.1 (see ``tests/emulators/provider.py``)."""
    async with Provider() as running:
        yield running


@pytest.fixture
async def telegram_api() -> AsyncIterator[TelegramEmulator]:
    """The loopback Telegram Bot API emulator, serving on 127.0.0.1."""
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
