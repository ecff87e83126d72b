"""``Runtime.settle`` answers from memory when this process saw every change, and
still finds work that another connection queued (the case memory cannot see)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from agents.delivery import queue_reply
from agents.intents import Conversation, dump_intent
from agents.replies import Reply
from bot.console import ConsoleSender
from bot.runtime import open_runtime
from config import Settings
from memory.outbox import OutboxRepo
from memory.store import Store
from memory.tasks import TaskRepo, TaskState
from tests.harness.common import NoModel
from tests.harness.inbound import console_inbound


async def test_settle_after_a_message_reads_nothing(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()) as rt:
        await rt.gateway.handle(console_inbound("/help"))
        await rt.settle()  # the first one reads the tables: nothing known yet
        await rt.gateway.handle(console_inbound("/help"))
        statements: list[str] = []
        rt.store._writer.set_trace_callback(statements.append)  # type: ignore[union-attr]  # open
        rt.store.reader.set_trace_callback(statements.append)
        await rt.settle()
        assert out.getvalue().count("Send /help <command> for details.") == 2
        assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")]


async def test_settle_finds_a_task_another_connection_queued(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()) as rt:
        await rt.gateway.handle(console_inbound("/help"))
        await rt.settle()
        intent = rt.coordinator.registry.intent(
            "help", Conversation(platform="console", chat_id="local", user_id="op"), "outside-1"
        )
        # Another connection (a second store on the file): this process is not told.
        async with Store.open(settings.database_path) as other, other.write() as tx:
            task, _ = await TaskRepo(other).create(
                tx,
                idempotency_key=intent.idempotency_key,
                kind=intent.kind,
                agent="ops",
                lane=intent.conversation.lane,
                intent=dump_intent(intent),
                now=datetime.now(UTC),
            )
        await rt.settle()
        done = await TaskRepo(rt.store).get(task.id)
        assert done is not None and done.state is TaskState.SUCCEEDED
        assert out.getvalue().count("Send /help <command> for details.") == 2


async def test_settle_delivers_a_reply_another_connection_queued(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()) as rt:
        await rt.gateway.handle(console_inbound("/help"))
        await rt.settle()
        async with Store.open(settings.database_path) as other, other.write() as tx:
            await queue_reply(
                OutboxRepo(other),
                tx,
                Conversation(platform="console", chat_id="local", user_id="op"),
                Reply(text="from elsewhere"),
                now=datetime.now(UTC),
            )
        await rt.settle()
        assert "from elsewhere" in out.getvalue()


async def test_an_inline_reply_is_claimed_in_the_message_commit(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()) as rt:
        await rt.gateway.handle(console_inbound("/help"))
        await rt.settle()
        statements: list[str] = []
        rt.store._writer.set_trace_callback(statements.append)  # type: ignore[union-attr]  # open
        await rt.gateway.handle(console_inbound("/help"))
        await rt.settle()
        assert out.getvalue().count("Send /help <command> for details.") == 2
        # (the trace repeats a statement once per trigger statement it runs)
        inserts = {s for s in statements if s.startswith("INSERT INTO outbox")}
        assert len(inserts) == 1 and inserts.pop().rstrip(")").endswith("'sending'")
        assert not [s for s in statements if "SET state = 'sending'" in s]  # no claim
        rows = await rt.store.fetchall("SELECT state FROM outbox")
        assert [r["state"] for r in rows] == ["sent", "sent"]


async def test_a_stopped_dispatcher_gets_no_claimed_replies(settings: Settings) -> None:
    out = io.StringIO()
    async with open_runtime(settings, [ConsoleSender(out)], mode="chat", embedder=NoModel()) as rt:
        await rt.outbox.stop()
        await rt.gateway.handle(console_inbound("/help"))
        rows = await rt.store.fetchall("SELECT state FROM outbox")
        assert [r["state"] for r in rows] == ["pending"]
        await rt.outbox.start()
        await rt.settle()
        assert out.getvalue().count("Send /help <command> for details.") == 1
