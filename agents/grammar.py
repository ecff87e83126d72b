"""What the chat grammars (:mod:`agents.invoice_grammar`, :mod:`agents.lead_grammar`)
share: the refusal they answer with, the command word they strip, the closed word
lists they pick from and the email address they read. Pure (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from agents.email_syntax import bad_email_message, clean_token, is_email

W = TypeVar("W", bound=str)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The input was not understood or not acceptable; ``message`` says what to type."""

    message: str


def command(name: str) -> re.Pattern[str]:
    """``/name`` or ``/names`` at the start, with an optional ``@botname``."""
    return re.compile(rf"^\s*/{name}s?(?:@\w+)?\b", re.IGNORECASE)


def after_command(pattern: re.Pattern[str], text: str) -> str:
    """``text`` without its command word (which is optional), stripped."""
    return pattern.sub("", text, count=1).strip()


def choose(word: str, choices: Sequence[W]) -> W | None:
    """The choice ``word`` names (case-insensitive), or None."""
    lowered = word.strip().lower()
    return next((choice for choice in choices if choice == lowered), None)


def read_email(token: str) -> str | Refusal:
    """The address in ``token`` (punctuation around it removed), or the refusal for it."""
    address = clean_token(token)
    return address if is_email(address) else Refusal(bad_email_message(address))
