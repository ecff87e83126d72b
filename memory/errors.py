"""Errors raised by the memory layer.

MemoryError_ (root; named with an underscore so it never shadows the builtin)
├── StoreClosedError      the store was used outside ``async with``
├── MigrationError        the database is newer than this code, or a migration failed
└── NotFoundError         a row the caller named does not exist
"""

from __future__ import annotations


class MemoryError_(Exception):
    """Root of every error the memory layer raises."""


class StoreClosedError(MemoryError_):
    """The store is not open."""


class MigrationError(MemoryError_):
    """The schema cannot be brought to the version this code expects."""


class NotFoundError(MemoryError_):
    """The requested row does not exist."""
