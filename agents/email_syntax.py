"""What the chat grammars accept as an email address.

Deliberately simple (``local@domain.tld``, no spaces, one ``@``): it catches typos such
as ``billing@acme`` or ``jane.acme.com`` before anything is stored. Whether a mailbox
exists is the email connector's business, not the parser's.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_TRAILING = ".,;:!?)>]\"'"
_LEADING = "(<[\"'"


def clean_token(token: str) -> str:
    """A word with the punctuation around it removed ("<jane@acme.com>," -> jane@acme.com)."""
    return token.strip(_TRAILING).lstrip(_LEADING).strip(_TRAILING)


def is_email(text: str) -> bool:
    """Whether ``text`` is one well-formed address."""
    return _EMAIL.fullmatch(text) is not None and ".." not in text


def bad_email_message(text: str) -> str:
    """The reply for an address that does not look right."""
    return f"{text!r} is not an email address: write it like billing@acme.com."
