"""Circuit breakers per hook, stored: one dead hook never delays a working one, and an
open breaker stays open across a restart until its cool-down (a ManualClock; no waiting)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.breakers import endpoint_of, label
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import ActionSettings, BreakerSettings, Settings
from memory.actions import ActionRow, ActionState
from memory.clock import ManualClock
from memory.embedder import SentenceTransformerEmbedder
from tests.conftest import Chat
from tests.emulators.provider import Provider

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
COOLDOWN = timedelta(minutes=10)


def _settings(tmp_path: Path, provider: Provider) -> Settings:
    return Settings(
        home=tmp_path / "home",
        hooks={"crm": provider.hook(), "dead": provider.hook("/dead")},
        actions=ActionSettings(retry_base_s=1.0, retry_max_s=1.0, max_attempts=20),
        breaker=BreakerSettings(threshold=2, cooldown_s=COOLDOWN.total_seconds()),
    )


@asynccontextmanager
async def _chat(
    settings: Settings, clock: ManualClock, embedder: SentenceTransformerEmbedder, counter: int
) -> AsyncIterator[Chat]:
    out = io.StringIO()
    async with open_runtime(
        settings, [ConsoleSender(out)], clock=clock, embedder=embedder
    ) as runtime:
        yield Chat(runtime, out, counter=counter)


def _posts(provider: Provider, path: str) -> list[str]:
    return [d.json()["text"] for d in provider.requests if d.path == path]


async def _tick(chat: Chat, clock: ManualClock, by: timedelta) -> None:
    clock.set(clock.now() + by)
    chat.runtime.coordinator.wake()
    await chat.runtime.settle()


async def test_a_dead_hook_opens_only_its_breaker_and_stays_open_across_a_restart(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    clock = ManualClock(START)
    settings = _settings(tmp_path, provider)
    provider.fail_next(2, status=503, path="/dead")
    async with _chat(settings, clock, embedder, 0) as chat:
        await chat.say("/policy ops.hook auto")
        await chat.say("/hook dead first")
        await _tick(chat, clock, timedelta(seconds=1))  # the retry fails too: open
        assert _posts(provider, "/dead") == ["first", "first"]
        [opened] = await chat.runtime.events.query(kind="breaker.opened")
        assert opened.subject == "connector:webhook:dead"
        status = await chat.say("/status")
        assert "webhook:dead open" in status and "webhook:crm" not in status
        # The other hook of the same connector delivers at once.
        await chat.say("/hook crm still flowing")
        assert _posts(provider, "/hook") == ["still flowing"]
        counter = chat.counter

    clock.set(clock.now() + timedelta(minutes=5))  # restarted within the cool-down
    async with _chat(settings, clock, embedder, counter) as chat:
        assert "webhook:dead open" in await chat.say("/status")
        await chat.say("/hook dead second")  # a new action waits for the cool-down
        assert _posts(provider, "/dead") == ["first", "first"]
        delayed = await chat.runtime.events.query(kind="action.delayed")
        assert delayed and delayed[-1].payload["why"] == "breaker_open"
        await chat.say("/hook crm after restart")
        assert _posts(provider, "/hook") == ["still flowing", "after restart"]

        await _tick(chat, clock, timedelta(minutes=5, seconds=1))  # cool-down over
        assert sorted(_posts(provider, "/dead")[2:]) == ["first", "second"]
        status = await chat.say("/status")
        assert "webhook closed" in status and "webhook:dead" not in status
        rows = await chat.runtime.store.fetchall("SELECT * FROM breakers")
        assert rows == []  # a closed breaker with no failures keeps no row
        states = await chat.runtime.store.fetchall("SELECT state FROM actions")
        assert {row["state"] for row in states} == {ActionState.SUCCEEDED.value}


def _action(connector: str, params: dict[str, object]) -> ActionRow:
    return ActionRow(
        id=1,
        task_id=1,
        agent="ops",
        name="hook",
        connector=connector,
        operation="post",
        params=dict(params),
        summary="",
        risk={},
        compensation=None,
        idempotency_key="k",
        fingerprint="f",
        gate="auto",
        state=ActionState.APPROVED,
        attempts=0,
        result=None,
        error=None,
        undo_of=None,
        created_at=START,
        updated_at=START,
    )


def test_endpoint_of_names_the_hook_or_the_connector() -> None:
    class Smtp:
        def endpoint(self, operation: str, params: object) -> str:
            return "smtp.example.com"

    assert endpoint_of(_action("webhook", {"hook": "crm"})) == "crm"
    assert endpoint_of(_action("email", {"to": "a@b.c"}), Smtp()) == "smtp.example.com"
    assert endpoint_of(_action("other", {})) == ""
    assert label("webhook", "crm") == "webhook:crm" and label("other", "") == "other"
