"""A worker's signal to its test: a small file that appears whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_marker(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a test polling for the file never reads it
    half-written (created, but its text not yet in it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
