"""Memory: the SQLite store, the event log and the repositories over it.

SQLite is the source of truth for everything soloops knows. This package makes no
decisions; it stores and answers.
"""
