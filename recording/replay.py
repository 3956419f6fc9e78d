"""Replay a recording into a broker with its original timing, scaled by a speed factor.

Record *i* is published at ``start + (t_i - t_0) / speed`` on the monotonic clock, so waits never
add up to drift; a record whose time is earlier than its predecessor's (a capture can
interleave) goes out right after it. Publishing does not wait for each PUBACK: up to ``window``
messages are unconfirmed at a time, and ``replay`` returns once the broker confirmed them all.

Publishing goes through ``recording.publisher.MqttPublisher`` (paho-mqtt on the event loop).
A scoped run (``--run-id``) renames the records on the way out: ``recording.runs``.

MQTT keeps order only within a QoS level (Mosquitto forwards a QoS 2 message after PUBREL), so
subscribers see each level's records in file order. The recording is read in 1 MiB chunks on
the loop's thread: a local read of that size is far below a scheduling tick.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from recording.format import Record, RecordingReader
from recording.publisher import MqttPublisher, PublishError

if TYPE_CHECKING:
    pass

MAX_SPEED: Final = 1000.0
LATE_AFTER_S: Final = 0.05
"""A record counts as late when it goes out this long after its scheduled time."""
PROGRESS_EVERY_S: Final = 0.1

Progress = Callable[[int, int], None]


ReplayError = PublishError
"""The broker refused, dropped or stalled the replay."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    records: int
    bytes: int
    """Payload bytes published."""
    wall_seconds: float
    late_records: int
    """Records published more than ``LATE_AFTER_S`` after their scheduled time."""
    late_records_max_lag_s: float
    """The largest delay of any record behind its schedule (0 when as fast as possible)."""
    span_seconds: float
    """Publish-time span of the recording (latest record time minus the earliest)."""
    truncated_bytes: int
    """Size of a torn tail at the end of the recording, which was not replayed."""
    skipped: int = 0
    """Records the ``transform`` left out (a scoped run publishes only station topics)."""

    @property
    def messages_per_second(self) -> float:
        return self.records / self.wall_seconds if self.wall_seconds > 0 else 0.0


async def replay(
    path: str | os.PathLike[str],
    *,
    host: str,
    port: int,
    speed: float | None = 1.0,
    qos_override: int | None = None,
    progress: Progress | None = None,
    client_id: str | None = None,
    window: int = 1000,
    total_records: int | None = None,
    transform: Callable[[Record], Record | None] | None = None,
) -> ReplayStats:
    """Publish every record of ``path`` in file order; ``speed=None`` is as fast as possible.

    ``progress(done, total)`` is called about ten times a second and once at the end; the
    total comes from ``total_records`` when the caller knows it, else from a counting pass.
    ``transform`` turns each record into the one published, or None to leave it out (on its
    original schedule either way): ``RunPrefix.record`` renames a run's stations.

    Raises ``RecordingError`` for a file that is not a recording and ``ReplayError`` when the
    broker cannot be reached, refuses a message or drops the connection.
    """
    if speed is not None and not 0 < speed <= MAX_SPEED:
        raise ValueError(f"speed must be in (0, {MAX_SPEED:g}], not {speed}")
    if qos_override not in (None, 0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos_override}")
    total = 0
    if progress is not None:
        total = total_records if total_records is not None else _count(path)
    loop = asyncio.get_running_loop()
    pacer, tally = _Pacer(loop, speed), _Tally(loop, progress, total)
    client_id = client_id or f"citysense-replay-{uuid.uuid4().hex[:12]}"
    with RecordingReader(path) as reader:
        async with MqttPublisher(host, port, client_id, window) as publisher:
            pacer.start()
            for original in reader:
                await pacer.wait_for(original.t_ns)
                record = original if transform is None else transform(original)
                if record is None:
                    tally.skip()
                    continue
                qos = record.qos if qos_override is None else qos_override
                await publisher.publish(record.topic, record.payload, qos, record.retain)
                tally.add(record)
            await publisher.drain()
    tally.report()
    return ReplayStats(
        records=tally.records,
        bytes=tally.payload_bytes,
        wall_seconds=loop.time() - pacer.started_at,
        late_records=pacer.late_records,
        late_records_max_lag_s=pacer.max_lag_s,
        span_seconds=tally.span_seconds,
        truncated_bytes=reader.truncated_bytes,
        skipped=tally.skipped,
    )


class _Tally:
    """Counts what went out and calls ``progress`` about ten times a second."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, progress: Progress | None, total: int
    ) -> None:
        self._loop, self._progress, self._total = loop, progress, total
        self._last_report = loop.time()
        self.records = self.payload_bytes = self.skipped = 0
        self._earliest: int | None = None
        self._latest: int | None = None

    def skip(self) -> None:
        self.skipped += 1

    def add(self, record: Record) -> None:
        self.records += 1
        self.payload_bytes += len(record.payload)
        t_ns = record.t_ns
        self._earliest = t_ns if self._earliest is None else min(self._earliest, t_ns)
        self._latest = t_ns if self._latest is None else max(self._latest, t_ns)
        if self._progress is not None and self._loop.time() - self._last_report >= PROGRESS_EVERY_S:
            self.report()

    def report(self) -> None:
        if self._progress is not None:
            self._progress(self.records + self.skipped, self._total)
            self._last_report = self._loop.time()

    @property
    def span_seconds(self) -> float:
        if self._earliest is None or self._latest is None:
            return 0.0
        return (self._latest - self._earliest) / 1e9


def _count(path: str | os.PathLike[str]) -> int:
    reader = RecordingReader(path)
    for _ in reader:
        pass
    return reader.records_read


class _Pacer:
    """Sleeps until each record's due time on the loop's monotonic clock; tracks lateness."""

    def __init__(self, loop: asyncio.AbstractEventLoop, speed: float | None) -> None:
        self._loop, self._speed = loop, speed
        self.started_at = loop.time()
        self._first_t_ns: int | None = None
        self._due = 0.0
        self.late_records = 0
        self.max_lag_s = 0.0

    def start(self) -> None:
        self.started_at = self._loop.time()

    async def wait_for(self, t_ns: int) -> None:
        if self._speed is None:
            return
        if self._first_t_ns is None:
            self._first_t_ns = t_ns
        self._due = max(self._due, (t_ns - self._first_t_ns) / 1e9 / self._speed)
        due_at = self.started_at + self._due
        ahead = due_at - self._loop.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
        lag = self._loop.time() - due_at
        self.max_lag_s = max(self.max_lag_s, lag)
        if lag > LATE_AFTER_S:
            self.late_records += 1
