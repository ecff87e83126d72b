"""/help, Telegram's command menu (setMyCommands, recorded by the emulator) and the
committed Slack app manifest come from one registry and never disagree."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from agents.registry import build_registry
from bot.manifest import MANIFEST_FILE, REGENERATE, run_manifest, slack_manifest
from config import Settings
from tests.bot.test_telegram import OP, running
from tests.emulators.telegram import TelegramEmulator

ROOT = Path(__file__).resolve().parents[2]
_SLASH = re.compile(
    r"- command: (/\w+)\n\s+url: \S+\n\s+description: (\".*\")\n\s+usage_hint: (\".*\")"
)


def _committed() -> dict[str, tuple[str, str]]:
    """The slash commands of the committed manifest: command -> (description, hint)."""
    text = (ROOT / MANIFEST_FILE).read_text(encoding="utf-8")
    return {c: (json.loads(d), json.loads(h)) for c, d, h in _SLASH.findall(text)}


def test_the_committed_manifest_is_current() -> None:
    committed = (ROOT / MANIFEST_FILE).read_text(encoding="utf-8")
    assert committed == slack_manifest(build_registry()), (
        f"{MANIFEST_FILE} is stale: run `{REGENERATE}` and commit the file"
    )


async def test_help_the_telegram_menu_and_the_manifest_agree(
    settings: Settings, telegram_api: TelegramEmulator
) -> None:
    async with running(settings, telegram_api) as bot:
        await bot.say("/help")
        # /help is long enough to go as two messages: read them together.
        shown = "\n".join(html.unescape(message.text) for message in bot.api.sent(OP))
    # /help lists "/usage   summary" per command.
    helped = {line[1:].split(maxsplit=1)[0]: line for line in shown.splitlines() if line[:1] == "/"}
    menu = {item["command"]: item["description"] for item in telegram_api.my_commands}
    assert list(menu) == list(helped)  # the same commands, in the same order
    for name, description in menu.items():
        assert helped[name].endswith(" " + description)  # /help shows the same summary

    slash = _committed()
    assert slash["/ops"][1].split(" | ") == list(menu)  # /ops offers every command
    assert "/invoice" in slash
    for command, (description, hint) in slash.items():
        if command != "/ops":
            name = command[1:]
            assert menu[name] == description
            assert hint.split(" | ")[0] in helped[name]  # the usage /help shows


def test_manifest_command_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "manifest.yml"
    assert run_manifest(target, check=True) == 1  # missing: stale
    assert run_manifest(target) == 0
    assert target.read_text(encoding="utf-8") == slack_manifest(build_registry())
    assert run_manifest(target, check=True) == 0
