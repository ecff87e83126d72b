"""The append-only event log, chained by hashes so tampering is detectable.

Each event's ``hash = sha256(prev_hash, seq, ts, kind, actor, subject, payload)``, where
``prev_hash`` is the hex hash of the event before it (:func:`chain_hash`). Editing,
inserting or deleting a row breaks the chain from that row on, and
:meth:`EventLog.verify` reports the first broken sequence number. Triggers also refuse
UPDATE and DELETE, so only a deliberate tamperer (who drops them) gets that far.

Storage (migration 13): ``prev_hash`` is not stored (it is the previous row's hash, so
a copy in every row added nothing a walk of the chain does not already have), and the
hash of a new row is stored as 32 raw bytes; rows written before keep their 64-char
hex text. Every reader goes through :func:`hash_hex`, so the API, anchors, backups and
exports still speak hex, and the chain's definition is unchanged.

Time filters: there is no index on ``ts``. ``event_days`` holds, per UTC day, the seq of
the first event written with that day; :func:`since_sql` turns ``ts >= T`` into a
rowid range that starts at the smallest first seq of any day at or after T's day. That
is exact even when the clock went backwards: an event with ``ts >= T`` has a day at or
after T's day, and its seq is at least the first seq of its own day.

Events are appended inside the caller's write transaction, so an event and the state
change it describes commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memory.clock import Clock, SystemClock, from_iso, to_iso
from memory.redact import Redactor
from memory.store import Store, Transaction

GENESIS = "0" * 64
_HEAD = "events.head"
_DAYS = "events.days"  # the days known to have an event_days row (committed)
_INSERT = (
    "INSERT INTO events (seq, ts, kind, actor, subject, payload, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DAY = "INSERT OR IGNORE INTO event_days (day, first_seq) VALUES (?, ?)"
# The smallest seq an event at or after a time can have (NULL, so no rows, when no
# event has a day at or after that time's day). Its parameter is the time (ISO).
_FIRST_SEQ = "(SELECT MIN(first_seq) FROM event_days WHERE day >= substr(?, 1, 10))"


def hash_hex(stored: object) -> str:
    """A stored hash as hex: new rows hold 32 raw bytes, older rows hex text."""
    return stored.hex() if isinstance(stored, bytes) else str(stored)


def since_sql(alias: str = "") -> str:
    """A WHERE condition for events at or after a time: rides the rowid, not a scan.

    Takes two parameters, both the time as :func:`memory.clock.to_iso` writes it.
    ``alias`` is the table alias with its dot (``"e."``) when the query joins.
    """
    return f"{alias}seq >= {_FIRST_SEQ} AND {alias}ts >= ?"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event log."""

    seq: int
    ts: datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    hash: str

    @classmethod
    def from_row(cls, row: Any) -> Event:
        """The event stored in one ``events`` row (any mapping by column name)."""
        return cls(
            seq=int(row["seq"]),
            ts=from_iso(row["ts"]),
            kind=row["kind"],
            actor=row["actor"],
            subject=row["subject"],
            payload=json.loads(row["payload"]),
            hash=hash_hex(row["hash"]),
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO strings)."""
        return {
            "seq": self.seq,
            "ts": to_iso(self.ts),
            "kind": self.kind,
            "actor": self.actor,
            "subject": self.subject,
            "payload": self.payload,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Draft:
    """An event to append with :meth:`EventLog.append_many`."""

    kind: str
    actor: str
    subject: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of checking the hash chain."""

    checked: int
    first_bad_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


# One encoder for every event: json.dumps with these options builds a new one per call.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)
# The C encoder behind it, made once: JSONEncoder.encode builds one (and a closure) on
# every call, a third of an event's encoding. Same arguments as JSONEncoder.iterencode
# passes for the options above, so the text (which the hash covers) is the same;
# check_circular is off (payloads are plain data the code builds).
_MAKE_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # untyped in typeshed
_C_ENCODER = (
    None
    if _MAKE_C_ENCODER is None
    else _MAKE_C_ENCODER(
        None, str, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
)


def canonical(payload: dict[str, Any]) -> str:
    """The one JSON text of a payload that the hash covers."""
    if _C_ENCODER is None:
        return _CANONICAL.encode(payload)
    return "".join(_C_ENCODER(payload, 0))


def chain_hash(
    prev_hash: str, seq: int, ts: str, kind: str, actor: str, subject: str, payload: str
) -> str:
    """The hash of one event given its predecessor's (both hex)."""
    return _digest(prev_hash, seq, ts, kind, actor, subject, payload).hex()


def _digest(
    prev_hash: str, seq: int, ts: str, kind: str, actor: str, subject: str, payload: str
) -> bytes:
    material = "\x1f".join((prev_hash, str(seq), ts, kind, actor, subject, payload))
    return hashlib.sha256(material.encode("utf-8")).digest()


class EventLog:
    """Append and read events. Payloads are redacted before they are written."""

    def __init__(self, store: Store, redactor: Redactor | None = None, clock: Clock | None = None):
        self._store = store
        self._redactor = redactor or Redactor()
        self._clock = clock or SystemClock()

    async def append(
        self,
        tx: Transaction,
        kind: str,
        *,
        actor: str,
        subject: str = "",
        payload: dict[str, Any] | None = None,
    ) -> int:
        """Append one event inside ``tx``; return its sequence number."""
        return await self._append(tx, [self._prepare(kind, actor, subject, payload)])

    async def append_many(self, tx: Transaction, drafts: Sequence[Draft]) -> list[int]:
        """Append several events inside ``tx`` in one statement; return their numbers.

        The chain head (last seq and hash) is cached on the store and updated when the
        transaction ends well (forgotten if its commit fails), so an append reads
        nothing. If another process appended meanwhile, the cached seq collides with
        the primary key: the head is read again and the batch retried, so the chain
        never forks.
        """
        if not drafts:
            return []
        prepared = [self._prepare(d.kind, d.actor, d.subject, d.payload) for d in drafts]
        last = await self._append(tx, prepared)
        return list(range(last - len(prepared) + 1, last + 1))

    async def record(
        self, kind: str, *, actor: str, subject: str = "", payload: dict[str, Any] | None = None
    ) -> int:
        """Append one event in a transaction of its own."""
        # Redacted and encoded before the write lock: it is the event's own work.
        prepared = [self._prepare(kind, actor, subject, payload)]
        async with self._store.write() as tx:
            return await self._append(tx, prepared)

    def _prepare(
        self, kind: str, actor: str, subject: str, payload: dict[str, Any] | None
    ) -> tuple[str, str, str, str]:
        redactor = self._redactor
        return (
            kind,
            redactor.text(actor),
            redactor.text(subject) if subject else "",
            canonical(redactor.data(payload)) if payload else "{}",
        )

    async def _append(self, tx: Transaction, prepared: list[tuple[str, str, str, str]]) -> int:
        """Insert prepared events after the chain head; return the last seq."""
        cache, scratch = self._store.cache, tx.scratch
        head: tuple[int, str] | None = scratch.get(_HEAD) or cache.get(_HEAD)
        if head is None:
            head = await self._read_head(tx)
        ts = to_iso(self._clock.now())
        rows, head = _chain(head, ts, prepared)
        try:
            await tx.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            # Another process appended since the head was cached: read it again.
            cache.pop(_HEAD, None)
            scratch.pop(_HEAD, None)
            rows, head = _chain(await self._read_head(tx), ts, prepared)
            await tx.executemany(_INSERT, rows)
        if _HEAD not in scratch:
            # The next write of the same shared commit chains on from here; if that
            # commit fails, the head is read again from the database.
            tx.on_release(lambda: cache.__setitem__(_HEAD, scratch[_HEAD]))
            tx.on_rollback(lambda: cache.pop(_HEAD, None))
        scratch[_HEAD] = head
        last = head[0]
        day = ts[:10]
        days: set[str] | None = cache.get(_DAYS)
        if days is None or day not in days:
            # Once per day per process: the first event of a day (in seq order, which
            # is the order of commits) names where that day starts.
            await tx.execute(_DAY, (day, last - len(rows) + 1))
            tx.on_commit(lambda: cache.setdefault(_DAYS, set()).add(day))
        return last

    async def _read_head(self, tx: Transaction) -> tuple[int, str]:
        last = await tx.fetchone("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        return (0, GENESIS) if last is None else (int(last["seq"]), hash_hex(last["hash"]))

    async def query(
        self,
        *,
        since: datetime | None = None,
        kind: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        """Events matching the filters. ``kind`` matches exactly or as a dotted prefix."""
        where: list[str] = []
        params: list[object] = []
        if since is not None:
            where.append(since_sql())
            params += [to_iso(since)] * 2
        if kind:
            where.append("(kind = ? OR kind LIKE ? ESCAPE '\\')")
            escaped = kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.extend([kind, f"{escaped}.%"])
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "DESC" if newest_first else "ASC"
        if limit is not None and not newest_first:
            # The newest N, shown oldest first.
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC"
            params.append(limit)
        else:
            sql += f" ORDER BY seq {order}"
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
        return [Event.from_row(row) for row in await self._store.fetchall(sql, params)]

    async def kinds(self) -> list[str]:
        """Every kind recorded so far, sorted."""
        rows = await self._store.fetchall("SELECT DISTINCT kind FROM events ORDER BY kind")
        return [str(row[0]) for row in rows]

    async def get(self, seq: int) -> Event | None:
        """One event by its sequence number."""
        row = await self._store.fetchone("SELECT * FROM events WHERE seq = ?", (seq,))
        return None if row is None else Event.from_row(row)

    async def last_seq(self) -> int:
        """The newest sequence number, 0 when the log is empty."""
        return int(await self._store.scalar("SELECT COALESCE(MAX(seq), 0) FROM events"))

    async def verify(self, batch: int = 5000) -> ChainReport:
        """Walk the whole chain and report the first event whose hash does not hold.

        An edited event fails its own hash; an event edited together with its hash
        fails the next one (which chains on the original); a deleted or inserted one
        leaves a gap or shifts every seq after it, which the hashes also cover.
        """
        checked = 0
        expected_prev, expected_seq = GENESIS, 1
        async for row in self._rows(batch):
            seq = int(row["seq"])
            if seq != expected_seq:
                return ChainReport(checked, expected_seq, f"event #{expected_seq} is missing")
            digest = chain_hash(
                expected_prev,
                seq,
                row["ts"],
                row["kind"],
                row["actor"],
                row["subject"],
                row["payload"],
            )
            if digest != hash_hex(row["hash"]):
                return ChainReport(
                    checked,
                    seq,
                    f"event #{seq} was changed after it was written (or does not follow"
                    f" #{seq - 1})",
                )
            expected_prev, expected_seq = digest, seq + 1
            checked += 1
        return ChainReport(checked)

    async def _rows(self, batch: int) -> AsyncIterator[Any]:
        after = 0
        while True:
            rows = await self._store.fetchall(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, batch)
            )
            if not rows:
                return
            for row in rows:
                yield row
            after = int(rows[-1]["seq"])


def _chain(
    head: tuple[int, str], ts: str, prepared: list[tuple[str, str, str, str]]
) -> tuple[list[tuple[object, ...]], tuple[int, str]]:
    """The rows to insert after ``head``, and the new head (last seq, hex hash)."""
    seq, prev_hash = head
    rows: list[tuple[object, ...]] = []
    for kind, actor, subject, body in prepared:
        seq += 1
        digest = _digest(prev_hash, seq, ts, kind, actor, subject, body)
        rows.append((seq, ts, kind, actor, subject, body, digest))
        prev_hash = digest.hex()
    return rows, (seq, prev_hash)
