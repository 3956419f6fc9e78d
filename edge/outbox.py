"""The agent's outbox: readings wait here until the broker acknowledged the batch carrying them.

The port (``Outbox``) is what the agent uses; ``MemoryOutbox`` below keeps everything in RAM (for
tests), ``edge.outbox_sqlite.SqliteOutbox`` keeps it on disk. Both keep one contract:

- ``put`` stores readings as their encoded JSON, routine or alarm priority.
- ``take`` seals waiting readings into numbered batches and hands out up to ``window`` of them to
  send at once; alarm batches go first. A sealed batch never changes: a re-send carries the same
  ``(boot_epoch, seq)`` and byte-identical readings, so ingest drops it as a duplicate.
- ``ack(seq)`` after the broker's PUBACK, in any order: only then does a batch leave the outbox.
  It stays in a retention window (bytes and age) so ``resend`` can answer a gap the broker made.
- When the waiting readings pass ``max_bytes`` (or are older than ``max_age``), the oldest routine
  readings go first; alarm readings go only when nothing routine is left (age never takes them).
  A batch in flight is never evicted; a sealed batch waiting to go again (after ``rewind`` or a
  restart) goes whole, oldest first. Every eviction is counted and lands in a pending
  ``GapMarker`` the agent announces to the center.
- ``seq`` is the outbox's: the SQLite outbox keeps counting across restarts and boots (at
  ``synchronous=FULL`` a seq is never reused), so ``resend(first_seq, last_seq)`` needs no boot.
  Each batch keeps the boot epoch it was sealed in, also when it is re-sent after a restart.

Ages are measured on the edge clock (the time a reading was put, or a batch acknowledged), never
on the device clock a reading carries: a device reset to 2000-01-01 must not look ancient.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Literal, Protocol

from pydantic import TypeAdapter
from pydantic_core import to_json

from protocol import SCHEMA_VERSION, Reading

MIB = 1 << 20
MAX_BATCH_BYTES = 512 * 1024
"""Readings per sealed batch stop here too: a batch stays well under ingest's 1 MiB payload cap."""

EvictionReason = Literal["bytes", "age", "corrupt", "store_lost", "expired"]
"""Why records left the outbox unsent: over ``max_bytes`` (or ``max_readings``), older than
``max_age``, a record whose bytes failed their check, a store file that could not be opened;
(``expired``, made by the agent) batches asked for again after they left the retention window."""

Clock = Callable[[], datetime]
_READINGS = TypeAdapter(list[Reading])


def utc_now() -> datetime:
    return datetime.now(UTC)


class Priority(IntEnum):
    ROUTINE = 0
    ALARM = 1


class OutboxError(RuntimeError):
    """The outbox's storage failed (a library error translated at the boundary)."""


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    max_bytes: int = 256 * MIB
    """Encoded bytes of the readings waiting to be sent (sealed or not)."""
    max_age: timedelta = timedelta(hours=48)
    """Routine readings waiting longer than this (since ``put``) are evicted."""
    retain_bytes: int = 16 * MIB
    """Encoded bytes of acknowledged batches kept for ``resend``."""
    retain_age: timedelta = timedelta(minutes=30)
    """Acknowledged batches are kept this long after their PUBACK."""
    max_readings: int | None = None
    """An optional cap on waiting readings; only the agent's ``buffer_readings`` setting uses it."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.retain_bytes < 0:
            raise ValueError("max_bytes must be positive and retain_bytes not negative")
        if self.max_age <= timedelta(0) or self.retain_age < timedelta(0):
            raise ValueError("max_age must be positive and retain_age not negative")
        if self.max_readings is not None and self.max_readings < 1:
            raise ValueError(f"max_readings must be positive, not {self.max_readings}")


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A numbered batch; ``body`` is the JSON array of its readings exactly as stored."""

    seq: int
    boot_epoch: int
    priority: Priority
    count: int
    body: bytes

    @property
    def readings(self) -> tuple[Reading, ...]:
        return tuple(_READINGS.validate_json(self.body))

    def payload(self, station_id: str, sent_at: datetime) -> bytes:
        """The ``TelemetryBatch`` on the wire, without decoding the readings again."""
        head = to_json(
            {
                "v": SCHEMA_VERSION,
                "station_id": station_id,
                "boot_epoch": self.boot_epoch,
                "seq": self.seq,
                "sent_at": sent_at,
            }
        )
        return head[:-1] + b',"readings":' + self.body + b"}"


@dataclass(frozen=True, slots=True)
class GapMarker:
    """Readings that left the outbox unsent, for the agent to announce.

    ``(boot_epoch, marker_id)`` names the marker (the boot it was opened in): once read it never
    changes, so the center can drop a marker announced twice. ``first_ts``/``last_ts`` are the
    device times of the oldest and newest evicted reading (None when unknown).
    ``first_seq``..``last_seq`` span the ``batches`` sealed batches given up: those are never
    re-sent, but may have reached the broker before the link dropped.
    """

    marker_id: int
    boot_epoch: int
    reason: EvictionReason
    readings: int
    first_ts: datetime | None
    last_ts: datetime | None
    batches: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Resend:
    """The answer to a re-send request for ``first_seq``..``last_seq``."""

    batches: tuple[SealedBatch, ...]
    """Acknowledged batches still retained: publish them again."""
    pending: tuple[int, ...]
    """Sequences not acknowledged yet: they will be sent anyway."""
    evicted: tuple[tuple[int, int], ...]
    """Inclusive ranges of sealed sequences the outbox no longer holds."""
    unknown: tuple[int, int] | None
    """The part of the request at or past the next sequence: never sealed."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    readings: int
    """Readings waiting (sealed and not)."""
    bytes: int
    in_flight: int
    retained_batches: int
    retained_bytes: int
    evicted_readings: int
    """Readings that left unsent, over the outbox's life: the sum of its gap markers."""
    evicted_batches: int
    corrupt_records: int
    retention_evicted: int
    """Acknowledged batches dropped from the retention window (no data lost)."""
    next_seq: int


class Outbox(Protocol):
    """What the agent needs from an outbox; ``MemoryOutbox`` and ``SqliteOutbox`` implement it."""

    boot_epoch: int
    """The boot new batches are sealed in."""

    def __len__(self) -> int:
        """Readings waiting for an acknowledgement."""
        ...

    def put(self, readings: Sequence[Reading], priority: Priority = Priority.ROUTINE) -> int:
        """Store readings; returns how many readings were evicted to keep the bounds."""
        ...

    def take(self, limit: int | None = None) -> list[SealedBatch]:
        """Batches to publish now (alarm first), at most ``limit`` and the in-flight window."""
        ...

    def ack(self, seq: int) -> bool:
        """The broker acknowledged ``seq``; False when nothing waited for it. Any order."""
        ...

    def rewind(self) -> int:
        """The link dropped: every batch in flight is offered again by ``take``."""
        ...

    def resend(self, first_seq: int, last_seq: int) -> Resend: ...

    def pending_gaps(self) -> list[GapMarker]:
        """Markers not announced yet; the open ones close (later evictions start a new one)."""
        ...

    def gap_announced(self, marker_id: int) -> bool: ...

    @property
    def stats(self) -> OutboxStats: ...

    def close(self) -> None: ...


def encode_reading(reading: Reading) -> bytes:
    return reading.model_dump_json().encode()


def seal_body(bodies: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(bodies) + b"]"


def missing_ranges(first: int, last: int, held: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Inclusive ranges of ``first``..``last`` not in ``held``."""
    ranges, start = [], first
    for seq in sorted(s for s in set(held) if first <= s <= last):
        if seq > start:
            ranges.append((start, seq - 1))
        start = seq + 1
    if start <= last:
        ranges.append((start, last))
    return tuple(ranges)


def check_range(first_seq: int, last_seq: int) -> None:
    if not 0 <= first_seq <= last_seq:
        raise ValueError(f"bad range {first_seq}..{last_seq}")


def resend_answer(
    first_seq: int,
    last_seq: int,
    next_seq: int,
    batches: tuple[SealedBatch, ...],
    sealed: Iterable[int],
) -> Resend:
    """What a re-send of ``first_seq..last_seq`` finds, given the retained ``batches`` of the
    range and the seqs still ``sealed`` (unacknowledged): the rest was evicted, or never
    sealed (at and above ``next_seq``)."""
    top = min(last_seq, next_seq - 1)
    pending = tuple(s for s in sorted(sealed) if first_seq <= s <= top)
    held = [b.seq for b in batches] + list(pending)
    unknown = (max(first_seq, next_seq), last_seq) if last_seq >= next_seq else None
    evicted = missing_ranges(first_seq, top, held) if first_seq <= top else ()
    return Resend(batches, pending, evicted, unknown)


def check_take(window: int, max_batch: int) -> None:
    if window < 1 or max_batch < 1:
        raise ValueError(f"window ({window}) and max_batch ({max_batch}) must be positive")


def as_time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class OpenGap:
    """A gap marker still counting evictions (shared bookkeeping of both implementations)."""

    marker_id: int
    boot_epoch: int
    reason: EvictionReason
    readings: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    batches: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def add(
        self,
        readings: int,
        first_ts: float | None,
        last_ts: float | None,
        seq: int | None = None,
    ) -> None:
        self.readings += readings
        if first_ts is not None:
            self.first_ts = first_ts if self.first_ts is None else min(self.first_ts, first_ts)
        if last_ts is not None:
            self.last_ts = last_ts if self.last_ts is None else max(self.last_ts, last_ts)
        if seq is not None:
            self.batches += 1
            self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)

    def marker(self) -> GapMarker:
        return GapMarker(
            self.marker_id,
            self.boot_epoch,
            self.reason,
            self.readings,
            as_time(self.first_ts),
            as_time(self.last_ts),
            self.batches,
            self.first_seq,
            self.last_seq,
        )


class GapBook:
    """Pending gap markers: evictions merge into one open marker per reason until the agent
    reads them (``close_all``), and leave when announced. ``dirty`` lists what changed."""

    def __init__(
        self, boot_epoch: int, gaps: Iterable[OpenGap] = (), open_ids: Iterable[int] = ()
    ) -> None:
        self.boot_epoch = boot_epoch
        self.gaps = {gap.marker_id: gap for gap in gaps}
        opened = set(open_ids)
        self.open = {g.reason: g for g in self.gaps.values() if g.marker_id in opened}
        self.next_id = max(self.gaps, default=0) + 1
        self.dirty: set[int] = set()

    def add(
        self,
        reason: EvictionReason,
        readings: int,
        first_ts: float | None,
        last_ts: float | None,
        seq: int | None = None,
    ) -> None:
        gap = self.open.get(reason)
        if gap is None:
            gap = OpenGap(self.next_id, self.boot_epoch, reason)
            self.open[reason] = self.gaps[self.next_id] = gap
            self.next_id += 1
        gap.add(readings, first_ts, last_ts, seq)
        self.dirty.add(gap.marker_id)

    def close_all(self) -> list[GapMarker]:
        self.dirty.update(gap.marker_id for gap in self.open.values())
        self.open.clear()
        return [gap.marker() for gap in self.gaps.values()]

    def announced(self, marker_id: int) -> bool:
        gap = self.gaps.pop(marker_id, None)
        if gap is not None and self.open.get(gap.reason) is gap:
            del self.open[gap.reason]
        self.dirty.discard(marker_id)
        return gap is not None


@dataclass(slots=True)
class _Waiting:
    body: bytes
    ts: float
    stored_at: float


@dataclass(slots=True)
class _Held:
    batch: SealedBatch
    size: int
    stored_at: float
    first_ts: float
    last_ts: float
    acked_at: float = 0.0


class MemoryOutbox:
    """The outbox in RAM: lost when the agent stops. For tests and for the agent's default."""

    def __init__(
        self,
        limits: OutboxLimits | None = None,
        *,
        boot_epoch: int = 0,
        max_batch: int = 500,
        window: int = 8,
        first_seq: int = 0,
        clock: Clock = utc_now,
    ) -> None:
        check_take(window, max_batch)
        self.limits = limits or OutboxLimits()
        if self.limits.max_readings is not None and self.limits.max_readings < max_batch:
            raise ValueError(f"max_readings {self.limits.max_readings} < max_batch {max_batch}")
        self.boot_epoch, self.max_batch, self.window = boot_epoch, max_batch, window
        self._clock = clock
        self._waiting: dict[Priority, deque[_Waiting]] = {p: deque() for p in Priority}
        self._sealed: dict[int, _Held] = {}
        self._in_flight: set[int] = set()
        self._retained: dict[int, _Held] = {}
        self._readings = self._bytes = self._retained_bytes = 0
        self._next_seq = first_seq
        self._evicted_readings = self._evicted_batches = self._retention_evicted = 0
        self._gaps = GapBook(boot_epoch)

    def __len__(self) -> int:
        return self._readings

    def put(self, readings: Sequence[Reading], priority: Priority = Priority.ROUTINE) -> int:
        now = self._now()
        queue = self._waiting[priority]
        for reading in readings:
            body = encode_reading(reading)
            queue.append(_Waiting(body, reading.ts.timestamp(), now))
            self._readings += 1
            self._bytes += len(body)
        return self._evict(now)

    def take(self, limit: int | None = None) -> list[SealedBatch]:
        self._evict(self._now())
        room = self.window - len(self._in_flight)
        room = room if limit is None else min(room, limit)
        out: list[SealedBatch] = []
        while len(out) < room:
            held = (
                self._ready(Priority.ALARM)
                or self._seal(Priority.ALARM)
                or self._ready(Priority.ROUTINE)
                or self._seal(Priority.ROUTINE)
            )
            if held is None:
                break
            self._in_flight.add(held.batch.seq)
            out.append(held.batch)
        return out

    def ack(self, seq: int) -> bool:
        held = self._sealed.pop(seq, None)
        if held is None:
            if seq >= self._next_seq or seq < 0:
                raise ValueError(f"batch {seq} was never sealed")
            return False
        self._in_flight.discard(seq)
        self._readings -= held.batch.count
        self._bytes -= held.size
        held.acked_at = self._now()
        self._retained[seq] = held
        self._retained_bytes += held.size
        self._trim_retained(held.acked_at)
        return True

    def rewind(self) -> int:
        count = len(self._in_flight)
        self._in_flight.clear()
        return count

    def resend(self, first_seq: int, last_seq: int) -> Resend:
        check_range(first_seq, last_seq)
        self._trim_retained(self._now())
        batches = tuple(
            self._retained[s].batch for s in sorted(self._retained) if first_seq <= s <= last_seq
        )
        return resend_answer(first_seq, last_seq, self._next_seq, batches, self._sealed)

    def pending_gaps(self) -> list[GapMarker]:
        return self._gaps.close_all()

    def gap_announced(self, marker_id: int) -> bool:
        return self._gaps.announced(marker_id)

    @property
    def stats(self) -> OutboxStats:
        return OutboxStats(
            readings=self._readings,
            bytes=self._bytes,
            in_flight=len(self._in_flight),
            retained_batches=len(self._retained),
            retained_bytes=self._retained_bytes,
            evicted_readings=self._evicted_readings,
            evicted_batches=self._evicted_batches,
            corrupt_records=0,
            retention_evicted=self._retention_evicted,
            next_seq=self._next_seq,
        )

    def close(self) -> None:
        """Nothing to release."""

    def _now(self) -> float:
        return self._clock().timestamp()

    def _ready(self, priority: Priority) -> _Held | None:
        for seq, held in self._sealed.items():
            if held.batch.priority == priority and seq not in self._in_flight:
                return held
        return None

    def _seal(self, priority: Priority) -> _Held | None:
        queue = self._waiting[priority]
        if not queue:
            return None
        taken = [queue.popleft()]
        size = len(taken[0].body)
        while queue and len(taken) < self.max_batch and size + len(queue[0].body) < MAX_BATCH_BYTES:
            taken.append(queue.popleft())
            size += len(taken[-1].body)
        body = seal_body(w.body for w in taken)
        batch = SealedBatch(self._next_seq, self.boot_epoch, priority, len(taken), body)
        self._next_seq += 1
        self._bytes += len(body) - size
        held = _Held(
            batch,
            len(body),
            min(w.stored_at for w in taken),
            min(w.ts for w in taken),
            max(w.ts for w in taken),
        )
        self._sealed[batch.seq] = held
        return held

    def _evict(self, now: float) -> int:
        """Keep the bounds: age first, then bytes (and the optional count); returns readings."""
        evicted = 0
        cutoff = now - self.limits.max_age.total_seconds()
        for seq, held in list(self._sealed.items()):
            ready = seq not in self._in_flight and held.batch.priority == Priority.ROUTINE
            if ready and held.stored_at < cutoff:
                evicted += self._drop_batch(seq, "age")
        routine = self._waiting[Priority.ROUTINE]
        while routine and routine[0].stored_at < cutoff:
            evicted += self._drop_reading(routine, "age")
        while self._over_budget():
            dropped = self._drop_oldest()
            if not dropped:
                break
            evicted += dropped
        self._trim_retained(now)
        return evicted

    def _over_budget(self) -> bool:
        cap = self.limits.max_readings
        return self._bytes > self.limits.max_bytes or (cap is not None and self._readings > cap)

    def _drop_oldest(self) -> int:
        for priority in Priority:
            for seq, held in self._sealed.items():
                if seq not in self._in_flight and held.batch.priority == priority:
                    return self._drop_batch(seq, "bytes")
            if self._waiting[priority]:
                return self._drop_reading(self._waiting[priority], "bytes")
        return 0

    def _drop_reading(self, queue: deque[_Waiting], reason: EvictionReason) -> int:
        gone = queue.popleft()
        self._readings -= 1
        self._bytes -= len(gone.body)
        self._evicted_readings += 1
        self._gaps.add(reason, 1, gone.ts, gone.ts)
        return 1

    def _drop_batch(self, seq: int, reason: EvictionReason) -> int:
        held = self._sealed.pop(seq)
        count = held.batch.count
        self._readings -= count
        self._bytes -= held.size
        self._evicted_readings += count
        self._evicted_batches += 1
        self._gaps.add(reason, count, held.first_ts, held.last_ts, seq)
        return count

    def _trim_retained(self, now: float) -> None:
        cutoff = now - self.limits.retain_age.total_seconds()
        while self._retained:
            seq, held = next(iter(self._retained.items()))
            if held.acked_at >= cutoff and self._retained_bytes <= self.limits.retain_bytes:
                break
            del self._retained[seq]
            self._retained_bytes -= held.size
            self._retention_evicted += 1
