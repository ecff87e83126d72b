"""Descriptions of the chat commands, shared by the grammar (bot/) and /help (ops)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """How one command is used, for help texts."""

    name: str
    usage: str
    summary: str
    example: str = ""
