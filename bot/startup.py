"""The ``soloops`` command's start: the cyclic collector paused while its modules load.

Importing soloops creates ~70k objects that live as long as the process (modules,
classes, pydantic validators, compiled patterns). The collector would walk them about
a hundred times while they are made, and again in every later full pass. ``bot.cli``
imports this module before anything else, which pauses collecting, and calls
:func:`imported` after its own imports: what exists then goes to the permanent
generation (:func:`gc.freeze`, which later passes skip) and collecting resumes. Objects
made after that are collected as usual. It takes ~10 ms off the first reply of a
scripted ``/help`` (bench group ``process``), and costs ~0.4 MB of import-time garbage
that is kept instead of freed.

Pydantic's plugins are switched off (``PYDANTIC_DISABLE_PLUGINS``) unless the
environment says otherwise: soloops uses none, and looking for them reads the entry
points of every installed distribution when the first model is built (~4 ms of that
same first reply). Setting the variable to an empty string turns the lookup back on.
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

# Only a collector that was running is resumed: a caller that paused it keeps it paused.
_paused = gc.isenabled()
gc.disable()


def imported() -> None:
    """Freeze what the imports made and resume collecting (once; later calls do nothing)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
