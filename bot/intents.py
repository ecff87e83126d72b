"""Compatibility names for front ends not yet moved to the registry (bot/telegram.py,
bot/slack_inbound.py): the default features' command catalogue.

The grammar is ``bot/grammar.py``; a running soloops's catalogue is
``runtime.registry.catalog`` (it includes features registered at start). Remove this
module once those front ends read the runtime's registry.
"""

from __future__ import annotations

from agents.feature import CommandSpec
from agents.registry import build_registry

COMMANDS: tuple[CommandSpec, ...] = build_registry().catalog
CATALOG: tuple[CommandSpec, ...] = COMMANDS
