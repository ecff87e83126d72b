"""A long reply split into several Telegram messages remembers which pieces went out:
a retry after a failed piece sends only the missing ones (real PTB, the emulator)."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.replies import Reply
from config import Settings
from memory.outbox import OutboxRepo
from tests.bot.test_telegram import OP, running
from tests.emulators.telegram import Failure, TelegramEmulator


async def test_a_retry_sends_only_the_pieces_that_did_not_go_out(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    text = "\n".join(f"line {i:04d} " + "x" * 90 for i in range(160))  # 4 pieces
    # Pieces 1 and 2 go through, the 3rd fails once with a 502.
    telegram_api.fail_next("sendMessage", Failure(200), Failure(200), Failure(502, "Bad Gateway"))
    async with running(settings, telegram_api) as bot:
        async with bot.runtime.store.write() as tx:
            outbox_id = await OutboxRepo(bot.runtime.store).enqueue(
                tx,
                platform="telegram",
                chat_id=str(OP),
                thread_id=None,
                reply_to="1:5",
                body=Reply(text=text).to_json(),
                now=datetime.now(UTC),
            )
        bot.runtime.outbox.wake()
        # The retry waits the outbox's first backoff step (1 s) of the system clock.
        await telegram_api.wait_for(
            lambda: len(telegram_api.sent(OP)) == 4, within_s=15, what="4 pieces"
        )
        await bot.runtime.outbox.drain()
        row = await OutboxRepo(bot.runtime.store).get(outbox_id)
        [retry] = await bot.runtime.events.query(kind="reply.retry")
    pieces = telegram_api.sent(OP)
    assert "\n".join(p.text for p in pieces) == text  # each piece once, in order
    assert len({p.text for p in pieces}) == 4
    calls = [call.params["text"] for call in telegram_api.calls_of("sendMessage")]
    # 1, 2, 3 (failed), then the retry: 3 and 4 only.
    assert calls == [pieces[0].text, pieces[1].text, pieces[2].text, pieces[2].text, pieces[3].text]
    assert [p.reply_to for p in pieces] == [5, None, None, None]
    assert "Bad Gateway" in retry.payload["error"]
    assert row is not None and row.pieces_sent == 4 and row.attempts == 2
    assert row.sent_ref == f"{OP}:{pieces[-1].message_id}"
