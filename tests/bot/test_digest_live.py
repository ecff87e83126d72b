"""The digest's facts read from a home the real coordinator wrote, then composed."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from agents.digest_compose import compose_digest, compose_today
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import Settings
from memory.embedder import SentenceTransformerEmbedder
from memory.reports import gather_digest_facts
from tests.conftest import Chat
from tests.emulators.provider import Provider


async def test_a_dead_letter_and_a_pending_card_reach_the_digest(
    tmp_path: Path, provider: Provider, embedder: SentenceTransformerEmbedder
) -> None:
    settings = Settings(home=tmp_path / "home", hooks={"crm": provider.hook()})
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], embedder=embedder) as runtime:
        chat = Chat(runtime, out)
        await chat.say("/hook crm please approve me")
        await chat.say("/policy ops.hook auto")
        provider.fail_next(1, status=403, body="bad signature")
        await chat.say("/hook crm broken")
        await chat.say("/help")
        facts = await gather_digest_facts(
            settings.database_path,
            now=datetime.now(UTC),
            timezone="Europe/Berlin",
            budget_for=settings.budget_for,
        )
        [dead_card] = [
            a
            for a in await runtime.coordinator.approvals.repo.pending()
            if a.purpose == "dead_letter"
        ]

    [dead] = facts.dead_letters
    assert dead.runbook == "webhook-rejected"
    assert dead.summary == "Post to the crm hook: broken"
    assert "answered 403" in dead.error
    assert dead.card is not None and dead.card.code == dead_card.code
    [waiting] = facts.pending_approvals
    assert waiting.card.purpose == "action" and waiting.agent == "ops"
    [failure] = facts.failures
    assert (failure.source, failure.runbook) == ("action", "webhook-rejected")
    assert failure.recovered_at is None
    [ops] = [a for a in facts.activity if a.agent == "ops"]
    # /policy and /help succeeded, the dead letter failed; two hooks proposed actions
    assert (ops.succeeded, ops.failed, ops.actions) == (2, 1, 2)
    assert facts.chain_head and facts.chain_length > 0

    digest = compose_digest(facts)
    assert not digest.all_clear
    assert digest.cards == (dead.card, waiting.card)
    assert "→ /runbook webhook-rejected" in digest.text
    assert f"card {dead.card.code}" in digest.text
    today = compose_today(facts)
    assert today.sections[0] == "Decide (2)"
