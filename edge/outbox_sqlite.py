"""The durable outbox: SQLite in WAL mode, one file per station (the ``Outbox`` contract).

Layout. Each reading is one row of ``routine`` or ``alarm`` holding its encoded JSON and a
CRC-32 of it; ids never repeat (``AUTOINCREMENT``). Sealing a batch copies nothing: a row of
``batches`` names its seq, boot epoch and id range, and the per-table watermark ``sealed_<p>``
in ``meta`` moves past it. Readings stay put until their batch leaves the retention window, so
a re-sent batch is read from the very same rows: byte-identical, across restarts.

Durability (``synchronous``). In WAL mode a committed transaction survives ``kill -9`` with
either setting: it is in the WAL file, in the OS's page cache. Power loss is where they differ:

- ``FULL`` (the default) fsyncs the WAL on every commit of ``put`` and ``take``. A reading is
  on disk when ``put`` returns, and a batch's seal is on disk before it can be published, so a
  power cut can neither lose a stored reading nor re-seal sent readings under another
  ``(boot_epoch, seq)``. Acknowledgements and gap bookkeeping commit at ``NORMAL``: losing the
  last ones to a power cut only makes a batch go out again with its own seq (ingest drops it);
  the next ``FULL`` commit makes them durable as well (the WAL is one file).
- ``NORMAL`` fsyncs only at checkpoints: after a power cut the last transactions may be rolled
  back, i.e. up to a checkpoint interval of readings lost and acknowledged batches re-sent.

A torn write at a power cut is a WAL frame with a bad checksum: SQLite drops it and the
transaction it belonged to at the next open. A reading whose bytes no longer match their CRC is
skipped, counted (``corrupt_records``) and announced in a ``corrupt`` gap marker. A file SQLite
cannot read at all is renamed aside and the outbox starts empty with a ``store_lost`` marker:
start-up never blocks. Not thread-safe: one caller at a time (``check_same_thread`` is off so
that caller may be an executor thread).
"""

from __future__ import annotations

import logging
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge.outbox import (
    MAX_BATCH_BYTES,
    Clock,
    EvictionReason,
    GapBook,
    GapMarker,
    OpenGap,
    OutboxError,
    OutboxLimits,
    OutboxStats,
    Priority,
    Resend,
    SealedBatch,
    check_range,
    check_take,
    encode_reading,
    resend_answer,
    seal_body,
    utc_now,
)
from protocol import Reading

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]
TABLE = {Priority.ROUTINE: "routine", Priority.ALARM: "alarm"}
COUNTERS = (
    "next_seq",
    "evicted_readings",
    "evicted_batches",
    "corrupt_records",
    "retention_evicted",
    "sealed_0",
    "sealed_1",
)
"""Kept in ``meta``: the next seq, life-long counters, and how far each table is sealed."""
_READINGS_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stored_at REAL NOT NULL, ts REAL NOT NULL,
    crc INTEGER NOT NULL, body BLOB NOT NULL)"""
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    _READINGS_TABLE.format(name="routine"),
    _READINGS_TABLE.format(name="alarm"),
    """CREATE TABLE IF NOT EXISTS batches (
        seq INTEGER PRIMARY KEY, boot_epoch INTEGER NOT NULL, priority INTEGER NOT NULL,
        first_id INTEGER NOT NULL, last_id INTEGER NOT NULL, count INTEGER NOT NULL,
        size INTEGER NOT NULL, stored_at REAL NOT NULL, first_ts REAL NOT NULL,
        last_ts REAL NOT NULL, acked_at REAL)""",
    """CREATE TABLE IF NOT EXISTS gaps (
        marker_id INTEGER PRIMARY KEY, boot_epoch INTEGER NOT NULL, reason TEXT NOT NULL,
        open INTEGER NOT NULL,
        readings INTEGER NOT NULL, first_ts REAL, last_ts REAL, batches INTEGER NOT NULL,
        first_seq INTEGER, last_seq INTEGER)""",
)
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
BUSY_TIMEOUT_S = 5.0
"""How long a call waits for another process's lock on the file before failing."""


@dataclass(slots=True)
class _Batch:
    """A ``batches`` row: sealed and waiting for its PUBACK, or retained after it."""

    seq: int
    boot_epoch: int
    priority: Priority
    first_id: int
    last_id: int
    count: int
    size: int
    stored_at: float
    first_ts: float
    last_ts: float
    acked_at: float | None = None


class SqliteOutbox:
    def __init__(
        self,
        path: Path | str,
        *,
        boot_epoch: int,
        limits: OutboxLimits | None = None,
        max_batch: int = 500,
        window: int = 8,
        clock: Clock = utc_now,
        synchronous: Synchronous = "FULL",
    ) -> None:
        check_take(window, max_batch)
        self.path = Path(path)
        self.limits = limits or OutboxLimits()
        self.boot_epoch, self.max_batch, self.window = boot_epoch, max_batch, window
        self.synchronous: Synchronous = synchronous
        self._clock = clock
        self._in_flight: set[int] = set()
        self._db = self._open()

    def __enter__(self) -> SqliteOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return sum(self._count.values()) + sum(b.count for b in self._sealed.values())

    # -- the port --------------------------------------------------------------------------

    def put(self, readings: Sequence[Reading], priority: Priority = Priority.ROUTINE) -> int:
        now = self._now()
        rows = []
        for reading in readings:
            body = encode_reading(reading)
            rows.append((now, reading.ts.timestamp(), zlib.crc32(body), body))
        with self._write(durable=True):
            sql = f"INSERT INTO {TABLE[priority]} (stored_at, ts, crc, body) VALUES (?, ?, ?, ?)"
            self._db.executemany(sql, rows)
            self._count[priority] += len(rows)
            self._bytes[priority] += sum(len(row[3]) for row in rows)
            return self._evict(now)

    def take(self, limit: int | None = None) -> list[SealedBatch]:
        room = self.window - len(self._in_flight)
        room = room if limit is None else min(room, limit)
        out: list[SealedBatch] = []
        with self._write(durable=True):
            self._evict(self._now())
            while len(out) < room:
                batch = (
                    self._ready(Priority.ALARM)
                    or self._seal(Priority.ALARM)
                    or self._ready(Priority.ROUTINE)
                    or self._seal(Priority.ROUTINE)
                )
                if batch is None:
                    break
                self._in_flight.add(batch.seq)
                out.append(batch)
        return out

    def ack(self, seq: int) -> bool:
        batch = self._sealed.get(seq)
        if batch is None:
            if not 0 <= seq < self._meta["next_seq"]:
                raise ValueError(f"batch {seq} was never sealed")
            return False
        now = self._now()
        with self._write(durable=False):
            self._db.execute("UPDATE batches SET acked_at = ? WHERE seq = ?", (now, seq))
            del self._sealed[seq]
            self._in_flight.discard(seq)
            batch.acked_at = now
            self._retained[seq] = batch
            self._trim_retained(now)
        return True

    def rewind(self) -> int:
        count = len(self._in_flight)
        self._in_flight.clear()
        return count

    def resend(self, first_seq: int, last_seq: int) -> Resend:
        check_range(first_seq, last_seq)
        with self._write(durable=False):
            self._trim_retained(self._now())
            wanted = [b for s, b in sorted(self._retained.items()) if first_seq <= s <= last_seq]
            found = [self._read(batch, lost_if_corrupt=False) for batch in wanted]
        batches = tuple(batch for batch in found if batch is not None)
        next_seq = self._meta["next_seq"]
        return resend_answer(first_seq, last_seq, next_seq, batches, self._sealed)

    def pending_gaps(self) -> list[GapMarker]:
        with self._write(durable=True):  # a closed marker must stay closed: read once, fixed
            return self._gaps.close_all()

    def gap_announced(self, marker_id: int) -> bool:
        with self._write(durable=False):
            self._db.execute("DELETE FROM gaps WHERE marker_id = ?", (marker_id,))
            return self._gaps.announced(marker_id)

    @property
    def stats(self) -> OutboxStats:
        return OutboxStats(
            readings=len(self),
            bytes=self._waiting_bytes(),
            in_flight=len(self._in_flight),
            retained_batches=len(self._retained),
            retained_bytes=sum(b.size for b in self._retained.values()),
            evicted_readings=self._meta["evicted_readings"],
            evicted_batches=self._meta["evicted_batches"],
            corrupt_records=self._meta["corrupt_records"],
            retention_evicted=self._meta["retention_evicted"],
            next_seq=self._meta["next_seq"],
        )

    def close(self) -> None:
        self._db.close()

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect_and_load()
        except sqlite3.DatabaseError as exc:
            if not str(getattr(exc, "sqlite_errorname", "")).startswith(_CORRUPT):
                raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
            aside = self._quarantine()
            log.error(
                "outbox %s unreadable (%s): moved to %s, starting empty", self.path, exc, aside
            )
        try:
            self._db = db = self._connect_and_load()
            with self._write(durable=True):
                self._gaps.add("store_lost", 0, None, None)
                self._bump("corrupt_records")
            return db
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc

    def _connect_and_load(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"{self.path}: WAL mode refused (journal_mode={mode})")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA journal_size_limit=67108864")
            for statement in SCHEMA:
                db.execute(statement)
            self._load(db)
        except BaseException:
            db.close()
            raise
        self._durable = self.synchronous == "FULL"
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._meta = {key: int(stored.get(key, 0)) for key in COUNTERS}
        self._meta_dirty = False
        self._sealed: dict[int, _Batch] = {}
        self._retained: dict[int, _Batch] = {}
        rows = db.execute("SELECT * FROM batches ORDER BY acked_at IS NOT NULL, acked_at, seq")
        for seq, boot, priority, *rest in rows:
            batch = _Batch(seq, boot, Priority(priority), *rest)
            (self._sealed if batch.acked_at is None else self._retained)[batch.seq] = batch
            self._meta["next_seq"] = max(self._meta["next_seq"], batch.seq + 1)
            key = f"sealed_{batch.priority.value}"
            self._meta[key] = max(self._meta[key], batch.last_id)
        self._count: dict[Priority, int] = {}
        self._bytes: dict[Priority, int] = {}
        for priority, table in TABLE.items():
            count, size = db.execute(
                f"SELECT count(*), coalesce(sum(length(body)), 0) FROM {table} WHERE id > ?",
                (self._watermark(priority),),
            ).fetchone()
            self._count[priority], self._bytes[priority] = count, size
        gaps = [
            (OpenGap(marker_id, boot, reason, *rest), bool(is_open))
            for marker_id, boot, reason, is_open, *rest in db.execute(
                "SELECT marker_id, boot_epoch, reason, open, readings, first_ts, last_ts,"
                " batches, first_seq, last_seq FROM gaps ORDER BY marker_id"
            )
        ]
        opened = (g.marker_id for g, is_open in gaps if is_open)
        self._gaps = GapBook(self.boot_epoch, (g for g, _ in gaps), opened)

    def _quarantine(self) -> Path:
        stamp = int(self._now())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 0
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.rename(aside.with_name(aside.name + suffix))
        return aside

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool) -> Iterator[None]:
        """One transaction; fsynced at commit when ``durable`` and ``synchronous`` is FULL."""
        want = durable and self.synchronous == "FULL"
        try:
            if want != self._durable:
                self._db.execute(f"PRAGMA synchronous={'FULL' if want else 'NORMAL'}")
                self._durable = want
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc
        try:
            yield
            self._save_bookkeeping()
            self._db.execute("COMMIT")
        except BaseException as exc:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._load(self._db)  # the in-memory view follows the database back
            self._in_flight &= set(self._sealed)
            if isinstance(exc, sqlite3.Error):
                raise OutboxError(f"outbox {self.path}: {exc}") from exc
            raise

    def _save_bookkeeping(self) -> None:
        if self._meta_dirty:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", self._meta.items()
            )
            self._meta_dirty = False
        for marker_id in sorted(self._gaps.dirty):
            gap = self._gaps.gaps[marker_id]
            self._db.execute(
                "INSERT OR REPLACE INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    gap.marker_id,
                    gap.boot_epoch,
                    gap.reason,
                    int(self._gaps.open.get(gap.reason) is gap),
                    gap.readings,
                    gap.first_ts,
                    gap.last_ts,
                    gap.batches,
                    gap.first_seq,
                    gap.last_seq,
                ),
            )
        self._gaps.dirty.clear()

    def _bump(self, key: str, by: int = 1) -> None:
        self._meta[key] += by
        self._meta_dirty = True

    # -- sealing and reading batches -------------------------------------------------------

    def _now(self) -> float:
        return self._clock().timestamp()

    def _watermark(self, priority: Priority) -> int:
        return self._meta[f"sealed_{priority.value}"]

    def _ready(self, priority: Priority) -> SealedBatch | None:
        for seq, batch in list(self._sealed.items()):
            if batch.priority == priority and seq not in self._in_flight:
                sealed = self._read(batch, lost_if_corrupt=True)
                if sealed is not None:
                    return sealed
        return None

    def _seal(self, priority: Priority) -> SealedBatch | None:
        table, start = TABLE[priority], self._watermark(priority)
        while self._count[priority]:
            rows = self._db.execute(
                f"SELECT id, stored_at, ts, crc, body FROM {table}"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (start, self.max_batch),
            ).fetchall()
            if not rows:  # the count drifted from the table: the table is right
                self._count[priority] = self._bytes[priority] = 0
                break
            good: list[tuple[int, float, float, int, bytes]] = []
            size, last_id = 0, start
            for row in rows:
                if good and size + len(row[4]) >= MAX_BATCH_BYTES:
                    break
                last_id = row[0]
                self._count[priority] -= 1
                self._bytes[priority] -= len(row[4])
                if zlib.crc32(row[4]) != row[3]:
                    self._db.execute(f"DELETE FROM {table} WHERE id = ?", (row[0],))
                    self._lost("corrupt", 1, row[2], row[2])
                    self._bump("corrupt_records")
                    continue
                good.append(row)
                size += len(row[4])
            start = last_id
            self._meta[f"sealed_{priority.value}"] = last_id
            self._meta_dirty = True
            if good:
                return self._record_seal(priority, good)
        return None

    def _record_seal(
        self, priority: Priority, rows: list[tuple[int, float, float, int, bytes]]
    ) -> SealedBatch:
        body = seal_body(row[4] for row in rows)
        batch = _Batch(
            seq=self._meta["next_seq"],
            boot_epoch=self.boot_epoch,
            priority=priority,
            first_id=rows[0][0],
            last_id=rows[-1][0],
            count=len(rows),
            size=len(body),
            stored_at=min(row[1] for row in rows),
            first_ts=min(row[2] for row in rows),
            last_ts=max(row[2] for row in rows),
        )
        self._db.execute(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                batch.seq,
                batch.boot_epoch,
                int(priority),
                batch.first_id,
                batch.last_id,
                batch.count,
                batch.size,
                batch.stored_at,
                batch.first_ts,
                batch.last_ts,
            ),
        )
        self._bump("next_seq")
        self._sealed[batch.seq] = batch
        return SealedBatch(batch.seq, batch.boot_epoch, priority, batch.count, body)

    def _read(self, batch: _Batch, *, lost_if_corrupt: bool) -> SealedBatch | None:
        """A sealed batch from its rows; corrupt rows are skipped and counted."""
        table = TABLE[batch.priority]
        rows = self._db.execute(
            f"SELECT id, ts, crc, body FROM {table} WHERE id BETWEEN ? AND ? ORDER BY id",
            (batch.first_id, batch.last_id),
        ).fetchall()
        intact = [zlib.crc32(row[3]) == row[2] for row in rows]
        good = [row[3] for row, ok in zip(rows, intact, strict=True) if ok]
        bad = [row for row, ok in zip(rows, intact, strict=True) if not ok]
        missing = batch.count - len(rows)  # a row lost under the file (never by the outbox)
        if bad or missing:
            self._bump("corrupt_records", len(bad) + missing)
            for row in bad:
                self._db.execute(f"DELETE FROM {table} WHERE id = ?", (row[0],))
            if lost_if_corrupt:
                ts = [row[1] for row in bad]
                self._lost(
                    "corrupt", len(bad) + missing, min(ts, default=None), max(ts, default=None)
                )
        if not good:
            self._forget(batch)
            if lost_if_corrupt:
                self._bump("evicted_batches")
                self._gaps.add("corrupt", 0, None, None, batch.seq)
            return None
        if bad or missing:
            batch.count = len(good)
            body = seal_body(good)
            batch.size = len(body)
            self._db.execute(
                "UPDATE batches SET count = ?, size = ? WHERE seq = ?",
                (batch.count, batch.size, batch.seq),
            )
        else:
            body = seal_body(good)
        return SealedBatch(batch.seq, batch.boot_epoch, batch.priority, batch.count, body)

    def _forget(self, batch: _Batch) -> None:
        """Delete a batch and its readings (retention over, evicted or unreadable)."""
        self._db.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,))
        self._db.execute(
            f"DELETE FROM {TABLE[batch.priority]} WHERE id BETWEEN ? AND ?",
            (batch.first_id, batch.last_id),
        )
        self._sealed.pop(batch.seq, None)
        self._retained.pop(batch.seq, None)
        self._in_flight.discard(batch.seq)

    # -- eviction --------------------------------------------------------------------------

    def _waiting_bytes(self) -> int:
        return sum(self._bytes.values()) + sum(b.size for b in self._sealed.values())

    def _over_budget(self) -> tuple[int, int]:
        """(bytes over ``max_bytes``, readings over ``max_readings``), each at least 0."""
        extra_bytes = max(0, self._waiting_bytes() - self.limits.max_bytes)
        cap = self.limits.max_readings
        return extra_bytes, 0 if cap is None else max(0, len(self) - cap)

    def _evict(self, now: float) -> int:
        evicted = 0
        cutoff = now - self.limits.max_age.total_seconds()
        for seq, batch in list(self._sealed.items()):
            ready = seq not in self._in_flight and batch.priority == Priority.ROUTINE
            if ready and batch.stored_at < cutoff:
                evicted += self._drop_batch(batch, "age")
        evicted += self._expire_routine(cutoff)
        while any(self._over_budget()):
            dropped = self._drop_oldest()
            if not dropped:
                break
            evicted += dropped
        self._trim_retained(now)
        return evicted

    def _expire_routine(self, cutoff: float) -> int:
        start = self._watermark(Priority.ROUTINE)
        young = self._db.execute(
            "SELECT id FROM routine WHERE id > ? AND stored_at >= ? ORDER BY id LIMIT 1",
            (start, cutoff),
        ).fetchone()
        where = "id > ?" + ("" if young is None else " AND id < ?")
        args = (start,) if young is None else (start, young[0])
        count, size, first_ts, last_ts = self._db.execute(
            f"SELECT count(*), coalesce(sum(length(body)), 0), min(ts), max(ts) FROM routine"
            f" WHERE {where}",
            args,
        ).fetchone()
        if count:
            self._db.execute(f"DELETE FROM routine WHERE {where}", args)
            self._dropped_rows(Priority.ROUTINE, count, size, first_ts, last_ts, "age")
        return int(count)

    def _drop_oldest(self) -> int:
        for priority in Priority:
            for seq, batch in list(self._sealed.items()):
                if seq not in self._in_flight and batch.priority == priority:
                    return self._drop_batch(batch, "bytes")
            if self._count[priority]:
                return self._drop_rows(priority)
        return 0

    def _drop_rows(self, priority: Priority) -> int:
        """The oldest waiting readings of ``priority``, enough to get back inside the bounds."""
        extra_bytes, extra_count = self._over_budget()
        table = TABLE[priority]
        cursor = self._db.execute(
            f"SELECT id, ts, length(body) FROM {table} WHERE id > ? ORDER BY id",
            (self._watermark(priority),),
        )
        count = size = last_id = 0
        first_ts = last_ts = None
        for row_id, ts, length in cursor:
            count, size, last_id = count + 1, size + length, row_id
            first_ts = ts if first_ts is None else min(first_ts, ts)
            last_ts = ts if last_ts is None else max(last_ts, ts)
            if size >= extra_bytes and count >= extra_count:
                break
        cursor.close()
        if not count:  # the count drifted from the table: the table is right
            self._count[priority] = self._bytes[priority] = 0
            return 0
        self._db.execute(
            f"DELETE FROM {table} WHERE id > ? AND id <= ?", (self._watermark(priority), last_id)
        )
        self._dropped_rows(priority, count, size, first_ts, last_ts, "bytes")
        return count

    def _dropped_rows(
        self,
        priority: Priority,
        count: int,
        size: int,
        first_ts: float | None,
        last_ts: float | None,
        reason: EvictionReason,
    ) -> None:
        self._count[priority] -= count
        self._bytes[priority] -= size
        self._lost(reason, count, first_ts, last_ts)

    def _drop_batch(self, batch: _Batch, reason: EvictionReason) -> int:
        self._forget(batch)
        self._bump("evicted_batches")
        self._lost(reason, batch.count, batch.first_ts, batch.last_ts, batch.seq)
        return batch.count

    def _lost(
        self,
        reason: EvictionReason,
        readings: int,
        first_ts: float | None,
        last_ts: float | None,
        seq: int | None = None,
    ) -> None:
        self._bump("evicted_readings", readings)
        self._gaps.add(reason, readings, first_ts, last_ts, seq)

    def _trim_retained(self, now: float) -> None:
        cutoff = now - self.limits.retain_age.total_seconds()
        size = sum(b.size for b in self._retained.values())
        for batch in list(self._retained.values()):
            assert batch.acked_at is not None
            if batch.acked_at >= cutoff and size <= self.limits.retain_bytes:
                break
            size -= batch.size
            self._forget(batch)
            self._bump("retention_evicted")
