"""The version of this soloops, as ``pyproject.toml`` names it (a test keeps them equal).

A constant rather than ``importlib.metadata.version("soloops")``: that lookup searches
the path and parses the package's metadata with the email parser, ~3 ms each time, and
every start needed it twice (the ``system.started`` event and the connectors'
User-Agent); for an editable install it also reads what was installed, not what runs.
"""

from __future__ import annotations

from typing import Final

VERSION: Final[str] = "0.1.0"
