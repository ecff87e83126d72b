"""A soloops process for the email crash test: a scripted workload of approved emails.

``python -m tests.harness.email_worker N STATUS_URL`` sends ``/mail <n>`` for n < N
through the real gateway (stable message ids: after a restart the same messages
arrive again and are dropped as duplicates), spread over four conversations so lanes
run side by side. The ``mailer`` test feature answers each with one email action
(``email.send``) that its policy sends for approval; the worker acts as the operator
and approves every card; on a "did this go through?" card it asks the SMTP sink
(``STATUS_URL`` + Message-ID) before answering. It prints READY once every message is
in and DONE when every task has a final state. The test kills it with SIGKILL at
random points and starts it again.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal

import httpx

from agents.actions import Action, Propose
from agents.base import Agent, AgentResult, TaskContext
from agents.feature import CommandSpec, Feature
from agents.intents import Intent
from agents.policy import Mode, Rule
from agents.ports import Ports
from bot.runtime import open_runtime
from config import load_settings
from memory.approvals import ApprovalRow
from tests.harness.common import OPERATORS, NoModel, landed_at_sink, operate, send_workload

LANES = 4


class MailIntent(Intent):
    """Send test email number ``n``."""

    kind: Literal["mail"] = "mail"
    n: int


class Mailer(Agent):
    """Proposes one email per intent; the executor sends it exactly once."""

    name = "mailer"

    async def handle(self, intent: Intent, ctx: TaskContext) -> AgentResult:
        assert isinstance(intent, MailIntent)
        params: dict[str, Any] = {
            "to": [f"r{intent.n}@client.test"],
            "subject": f"Mail {intent.n}",
            "text": f"This is mail {intent.n}.",
        }
        return Propose(
            Action(
                name="send",
                connector="email",
                operation="send",
                params=params,
                summary=f"Email mail {intent.n} to r{intent.n}@client.test",
            )
        )


def _mail_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) != 1:
        raise ValueError("takes one number")
    return {"n": tokens[0]}


def _build(_: Ports) -> Agent:
    return Mailer()


FEATURE = Feature(
    name="mailer",
    build=_build,
    intents=(MailIntent,),
    commands=(
        CommandSpec("mail", "mail", "mail <n>", "send test mail n", "", "tokens", _mail_args),
    ),
    capabilities=frozenset({("email", "send")}),
    policies={"send": Rule(mode=Mode.APPROVE)},
)


async def main(workload: int, status_url: str) -> None:
    settings = load_settings()
    async with (
        open_runtime(
            settings, [], features=[FEATURE], operators=OPERATORS, embedder=NoModel()
        ) as runtime,
        httpx.AsyncClient() as http,
    ):

        async def decide(card: ApprovalRow) -> str:
            if card.purpose == "reconcile":
                return await landed_at_sink(http, status_url, card, settings.email.from_address)
            return "approve"  # the action card, or Retry on a dead letter

        mails = ((f"e{n}", f"c{n % LANES}", f"/mail {n}") for n in range(workload))
        await send_workload(runtime, mails)
        await operate(runtime, decide, workload=workload, kind="mail", pause_s=0.02)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
