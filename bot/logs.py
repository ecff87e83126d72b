"""Logging set-up: a rotating file in the data directory, secrets redacted."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from memory.redact import RedactingFilter, Redactor

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(path: Path, level: str, redactor: Redactor, *, to_stderr: bool) -> None:
    """Log to ``path`` (rotated at 5 MB, 5 kept); also to stderr when asked.

    The console chat logs to the file only, so no traceback ever lands in the chat.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    redacting = RedactingFilter(redactor)
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=5_000_000, backupCount=5, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter(FORMAT))
    file_handler.addFilter(redacting)
    root.addHandler(file_handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(FORMAT))
        stream.addFilter(redacting)
        root.addHandler(stream)
    root.setLevel(level)
    # Libraries that log every HTTP request at INFO would drown ours.
    for noisy in ("httpx", "httpcore", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
