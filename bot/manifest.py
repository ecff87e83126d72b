"""The command menus, generated from the feature registry: Telegram's ``/`` menu
(``setMyCommands``) and the Slack app manifest (``slack-app-manifest.yml``).

/help, both menus and the manifest read the same :class:`~agents.registry.Registry`
catalogue, so they never disagree. The manifest is a committed file that people paste
into Slack; ``soloops manifest`` (or ``python -m bot.manifest``) writes it again after a
feature adds or changes a command, and a test fails while the committed copy is stale.

In Slack every command is reachable through ``/ops <command> ...``; the commands in
:data:`SLACK_SLASH` also get a slash command of their own where a registered feature
has them (``/invoice Acme 1200 EUR ...`` in Slack is ``/invoice Acme 1200 EUR ...``
typed anywhere else).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.feature import CommandSpec
from agents.registry import Registry, build_registry

OPS = "/ops"
# Commands that read better as their own Slack slash command than behind /ops.
SLACK_SLASH: tuple[str, ...] = ("invoice", "remind", "lead")
MANIFEST_FILE = "slack-app-manifest.yml"
PUBLIC_URL = "https://soloops.example.com"
REGENERATE = "soloops manifest"
_TELEGRAM_DESCRIPTION = 256  # Bot API: BotCommand.description is 1-256 characters
_SLACK_HINT = 1000  # what a slash command's usage_hint may hold, comfortably


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """One Slack slash command of the manifest."""

    command: str
    description: str
    usage_hint: str


def telegram_menu(registry: Registry) -> list[tuple[str, str]]:
    """``(command, description)`` for Telegram's ``setMyCommands``: every command."""
    return [(spec.name, spec.summary[:_TELEGRAM_DESCRIPTION]) for spec in registry.catalog]


def _arguments(spec: CommandSpec) -> str:
    """The usage without the command's own name: what follows ``/name``."""
    head, _, rest = spec.usage.partition(" ")
    rest = rest.replace(f"| {spec.name} ", "| ")  # a second form repeats the name
    return rest if head == spec.name else spec.usage


def slash_commands(registry: Registry) -> list[SlashCommand]:
    """``/ops`` (every command) and the per-feature slash commands the registry has."""
    names = [spec.name for spec in registry.catalog]
    hint = " | ".join(names)
    commands = [SlashCommand(OPS, "Tell soloops what to do", hint[:_SLACK_HINT])]
    for name in SLACK_SLASH:
        spec = registry.command(name)
        if spec is not None:
            commands.append(SlashCommand(f"/{name}", spec.summary, _arguments(spec)[:_SLACK_HINT]))
    return commands


def slash_names(registry: Registry) -> frozenset[str]:
    """The slash commands Slack sends soloops (``/ops`` and the per-feature ones)."""
    return frozenset(command.command for command in slash_commands(registry))


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid ones)."""
    return json.dumps(text, ensure_ascii=False)


def slack_manifest(registry: Registry, url: str = PUBLIC_URL) -> str:
    """The Slack app manifest (YAML) for ``registry``'s commands."""
    events = f"{url}/slack/events"
    lines = [
        "# soloops as a Slack app. Create it in one paste:",
        "#   https://api.slack.com/apps -> Create New App -> From an app manifest -> pick the",
        "#   workspace -> paste this file.",
        "#",
        f"# Generated from the feature registry by `{REGENERATE}`: do not edit by hand; run it",
        "# again after adding or changing a command (a test fails while this copy is stale).",
        "#",
        f"# HTTP mode (the default below): replace {url} with the public",
        "# HTTPS address that reaches `soloops run` (SOLOOPS_HTTP__HOST/PORT, path /slack/events)",
        "# everywhere below.",
        "# Socket Mode: set socket_mode_enabled to true; the URLs are then ignored and may stay.",
        '# See the README\'s "Slack" section for the tokens to copy afterwards.',
        "display_information:",
        "  name: soloops",
        "  description: The agent OS for your one-person company",
        '  background_color: "#1d1c1d"',
        "features:",
        "  app_home:",
        "    home_tab_enabled: true # the operator's dashboard (views.publish)",
        "    messages_tab_enabled: true",
        "    messages_tab_read_only_enabled: false",
        "  bot_user:",
        "    display_name: soloops",
        "    always_online: true",
        "  slash_commands:",
    ]
    for command in slash_commands(registry):
        lines += [
            f"    - command: {command.command}",
            f"      url: {events}",
            f"      description: {_q(command.description)}",
            f"      usage_hint: {_q(command.usage_hint)}",
            "      should_escape: false",
        ]
    lines += [
        "oauth_config:",
        "  scopes:",
        "    bot:",
        "      - commands # the slash commands above",
        "      - app_mentions:read # @soloops in channels",
        "      - im:history # direct messages to the bot",
        "      - chat:write # replies, approval cards and their updates",
        "      - chat:write.public # answer slash commands in channels the bot has not joined",
        "      - files:read # download voice clips and audio files sent to the bot",
        "settings:",
        "  event_subscriptions:",
        f"    request_url: {events}",
        "    bot_events:",
        "      - app_home_opened # refresh the Home tab when the operator looks",
        "      - app_mention",
        "      - message.im",
        "  interactivity:",
        "    is_enabled: true",
        f"    request_url: {events}",
        "  org_deploy_enabled: false",
        "  socket_mode_enabled: false",
        "  token_rotation_enabled: false",
    ]
    return "\n".join(lines) + "\n"


def write_manifest(path: Path, registry: Registry | None = None) -> bool:
    """Write the manifest to ``path``; True when it changed."""
    text = slack_manifest(registry or build_registry())
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``soloops manifest [FILE] [--check]``: write (or check) the Slack app manifest."""
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="write the Slack app manifest from the feature registry"
    )
    parser.add_argument("file", nargs="?", default=MANIFEST_FILE, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    args = parser.parse_args(argv)
    return run_manifest(Path(args.file), check=args.check)


def run_manifest(path: Path, *, check: bool = False) -> int:
    """Write or check ``path``; 0 current/written, 1 stale (with ``check``)."""
    if check:
        current = path.exists() and path.read_text(encoding="utf-8") == slack_manifest(
            build_registry()
        )
        if not current:
            print(f"{path} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    changed = write_manifest(path)
    print(f"{'wrote' if changed else 'unchanged:'} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
