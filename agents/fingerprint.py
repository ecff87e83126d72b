"""The identity of an exact action, which approvals bind."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(agent: str, action: dict[str, Any]) -> str:
    """Any change to the action (or the agent proposing it) gives another fingerprint."""
    body = json.dumps(
        action, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(f"{agent}\x1f{body}".encode()).hexdigest()
