"""Files that replies carry (a digest chart, an invoice PDF), kept in the home.

A reply that sends a file names it by path in the outbox, so the file must exist before
the reply is queued and for as long as a delivery may be retried, across restarts.
Files are content-addressed (the name starts with the bytes' sha256), written once,
atomically (temporary file, fsync, rename) and private to the owner (0600).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str) -> str:
    """``filename`` reduced to letters, digits, ``.``, ``_`` and ``-`` (no path parts)."""
    name = _UNSAFE.sub("-", Path(filename).name).strip(".-") or "file"
    return name[:120]


class FileStore:
    """Content-addressed files under one folder (``<home>/files``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, content: bytes, filename: str) -> Path:
        """Where ``content`` named ``filename`` is (or would be) kept."""
        digest = hashlib.sha256(content).hexdigest()[:32]
        return self.root / f"{digest}-{safe_name(filename)}"

    async def save(self, content: bytes, filename: str) -> Path:
        """Keep ``content``; the same bytes and name give the same path (written once)."""
        return await asyncio.to_thread(self._save, content, filename)

    def _save(self, content: bytes, filename: str) -> Path:
        target = self.path_for(content, filename)
        if target.exists() and target.stat().st_size == len(content):
            return target
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target
