"""Keep secrets out of the event log and the log file.

Three rules: values under secret-looking keys are replaced, any configured secret
value found inside a string is replaced wherever it appears, and so is the value of
a secret-looking URL query parameter (``?token=...``, ``&sig=...``): URLs are not
secrets themselves, but people put credentials in them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|secret|passw(or)?d|api[_-]?key|authorization|signature|cookie|credential)",
    re.IGNORECASE,
)

# A query parameter whose name looks like a credential: keep the name, hide the value.
_URL_SECRET = re.compile(
    r"([?&;][^=&#\s]*(?:token|secret|passw|key|sig|auth|credential)[^=&#\s]*=)[^&#\s'\"`]+",
    re.IGNORECASE,
)


_PLAIN = frozenset({int, float, bool, type(None)})  # values that cannot hold a secret
_KEY_VERDICTS: dict[object, bool] = {}  # payload keys are a small fixed set: remember them


def _secret_key(key: object) -> bool:
    verdict = _KEY_VERDICTS.get(key)
    if verdict is None:
        verdict = _SECRET_KEY.search(str(key)) is not None
        if len(_KEY_VERDICTS) < 4096:
            _KEY_VERDICTS[key] = verdict
    return verdict


class Redactor:
    """Removes known secret values and secret-named fields from data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        """Replace every configured secret inside ``value``."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if "=" in value:
            value = _URL_SECRET.sub(rf"\g<1>{REDACTED}", value)
        return value

    def data(self, value: Any) -> Any:
        """Redact a JSON-like structure recursively, returning a new one."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if _secret_key(key):
                    out[key] = REDACTED
                elif type(item) in _PLAIN:  # the common case, without a call per value
                    out[key] = item
                elif type(item) is str:
                    out[key] = self.text(item)
                else:
                    out[key] = self.data(item)
            return out
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that runs every record's final message through a Redactor."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._redactor.text(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.text(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
