"""The version of this soloops, as ``pyproject.toml`` names it (a test keeps them equal).

A constant rather than ``importlib.metadata.version("soloops")``: that lookup searches
the path and parses the package's metadata with the email parser, ~3 ms of every start
(the ``system.started`` event names the version), and for an editable install it reads
what was installed, not what runs.
"""

from __future__ import annotations

from typing import Final

VERSION: Final[str] = "0.1.0"
