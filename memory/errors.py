"""Errors raised by the memory layer.

MemoryError_ (root; named with an underscore so it never shadows the builtin)
├── StoreClosedError      the store was used outside ``async with``
├── MigrationError        the database is newer than this code, or a migration failed
├── NotFoundError         a row the caller named does not exist
├── EmbedderUnavailable   the embedding model is not loaded, or failed to load
├── OwnershipError        a write or delete outside the caller's own namespace
├── SnapshotError         a consistent read-only view of the database cannot be had
├── CorruptDatabaseError  the database file is not a readable SQLite database
└── HistoryLostError      the database holds less history than its anchor recorded
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


class EmbedderUnavailable(MemoryError_):
    """The embedding model is not loaded, or could not be loaded."""


class OwnershipError(MemoryError_):
    """An agent tried to change memory outside its own namespace."""


class SnapshotError(MemoryError_):
    """The database cannot be opened for a read-only snapshot (missing, unreadable)."""


class CorruptDatabaseError(MemoryError_):
    """The database file is damaged or not a SQLite database at all."""


class HistoryLostError(MemoryError_):
    """The database is behind the chain anchor kept beside it (lost or replaced)."""
