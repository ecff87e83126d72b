"""Short hints that say what to do about a failure, shown on dead-letter cards."""

from __future__ import annotations

HINTS = {
    ("webhook", "permanent"): (
        "The receiver refused the request. Check the hook's url and secret in your settings"
        " (SOLOOPS_HOOKS or [hooks.<name>]), then Retry."
    ),
    ("webhook", "exhausted"): (
        "The receiver kept failing or timing out. Check that it is up, then Retry."
    ),
}
GENERIC = {
    "permanent": "The service refused the request; fix the cause named above, then Retry.",
    "exhausted": "The service kept failing; check that it is up, then Retry.",
    "uncertain": "soloops cannot tell whether this happened. Check the other side first.",
}


def hint(connector: str, kind: str) -> str:
    """What the operator can do about a ``kind`` failure of ``connector``."""
    return HINTS.get((connector, kind)) or GENERIC.get(kind, "See the event log for details.")
