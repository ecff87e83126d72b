"""Runbooks: what to do about each kind of failure, as short Markdown files.

Each ``config/runbooks/<kind>.md`` starts with a ``# Title`` line and has a
``## What to do`` part. Failures, dead-letter cards and the digest name a kind;
``/runbook <kind>`` shows its text. :func:`runbook_for_error` maps an error (its text,
its exception type, the connector and the executor's failure word) to a kind; it is a
plain function so every caller agrees on the mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

# The executor's failure words (agents/runbook.py): permanent, exhausted, uncertain.
_BY_CONNECTOR: Final[dict[tuple[str, str], str]] = {
    ("webhook", "permanent"): "webhook-rejected",
    ("webhook", "exhausted"): "webhook-unreachable",
}
_BY_FAILURE: Final[dict[str, str]] = {
    "permanent": "service-refused",
    "exhausted": "service-unavailable",
    "uncertain": "action-uncertain",
}

# First match wins: the specific causes come before the broad ones.
_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("database-locked", r"database is locked|database table is locked|SQLITE_BUSY"),
        (
            "database-full",
            r"database or disk is full|disk is full|no space left|SQLITE_FULL|ENOSPC",
        ),
        ("smtp-auth-failed", r"SMTPAuthentication|smtp.{0,40}auth|auth.{0,40}smtp|\b53[45]\b"),
        ("slack-token-revoked", r"token_revoked|invalid_auth|account_inactive|not_authed"),
        ("model-missing", r"EmbedderUnavailable|model .{0,80}not (?:loaded|found|available)"),
        ("budget-exceeded", r"budget"),
        ("breaker-open", r"breaker|circuit open"),
        ("webhook-rejected", r"hook '[^']*' answered [34]\d\d"),
        (
            "webhook-unreachable",
            r"hook '[^']*' answered 5\d\d|could not reach hook|hook '[^']*' did not answer",
        ),
        (
            "telegram-unreachable",
            r"telegram.{0,80}(?:timed? ?out|network|connect|unreachable|502|503|504)"
            r"|(?:timed? ?out|network|connect).{0,80}telegram|api\.telegram\.org",
        ),
    )
)


class RunbookNotFound(LookupError):
    """There is no runbook of that kind; ``str()`` names the kinds there are."""


@dataclass(frozen=True, slots=True)
class Runbook:
    """One runbook: its kind (file name), title (first heading) and Markdown text."""

    kind: str
    title: str
    text: str

    @property
    def what_to_do(self) -> str:
        """The '## What to do' part, without its heading."""
        _, _, rest = self.text.partition("## What to do")
        return rest.split("\n## ", 1)[0].strip()


def _folder() -> resources.abc.Traversable:
    return resources.files("config") / "runbooks"


@cache
def kinds() -> tuple[str, ...]:
    """Every runbook kind there is, sorted."""
    return tuple(
        sorted(
            entry.name.removesuffix(".md")
            for entry in _folder().iterdir()
            if entry.name.endswith(".md")
        )
    )


@cache
def runbook(kind: str) -> Runbook:
    """The runbook of ``kind``.

    Raises:
        RunbookNotFound: no such kind; the message lists the kinds there are.
    """
    if kind not in kinds():
        raise RunbookNotFound(f"no runbook {kind!r}; there are: {', '.join(kinds())}")
    text = (_folder() / f"{kind}.md").read_text(encoding="utf-8")
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    title = first.removeprefix("#").strip() if first.startswith("# ") else kind
    return Runbook(kind=kind, title=title, text=text)


def runbook_for_error(
    error: str | None = None,
    *,
    error_type: str | None = None,
    connector: str | None = None,
    failure: str | None = None,
) -> str | None:
    """The runbook kind for a failure, or None when nothing specific applies.

    Args:
        error: the error text as stored (a task's error, an event's ``error``).
        error_type: the exception's class name, when known (``task.failed`` has it).
        connector: the connector of a failed action (``webhook``...).
        failure: the executor's word for it: ``permanent``, ``exhausted``, ``uncertain``.
    """
    text = " ".join(part for part in (error_type, error) if part)
    for kind, pattern in _PATTERNS:
        if text and pattern.search(text):
            return kind
    if connector and failure and (connector, failure) in _BY_CONNECTOR:
        return _BY_CONNECTOR[(connector, failure)]
    if failure:
        return _BY_FAILURE.get(failure)
    return None
