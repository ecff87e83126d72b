"""Short hints that say what to do about a failure, shown on dead-letter cards.

Features declare their own hints per (connector, failure kind) in ``Feature.hints``;
the registry gathers them. These generic ones apply when a feature has none.
"""

from __future__ import annotations

from collections.abc import Mapping

GENERIC = {
    "permanent": "The service refused the request; fix the cause named above, then Retry.",
    "exhausted": "The service kept failing; check that it is up, then Retry.",
    "uncertain": "soloops cannot tell whether this happened. Check the other side first.",
}


def hint(hints: Mapping[tuple[str, str], str], connector: str, kind: str) -> str:
    """What the operator can do about a ``kind`` failure of ``connector``."""
    return hints.get((connector, kind)) or GENERIC.get(kind, "See the event log for details.")
