"""Shared by the outbox tests: a settable clock, readings numbered by their second, builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.outbox import SealedBatch, encode_reading
from protocol import Reading, SensorKind

T0 = datetime(2026, 7, 1, tzinfo=UTC)
BOOT = 1_782_864_000


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def readings(first: int, count: int, sensor: str = "st-1.cover-01") -> list[Reading]:
    """Reading ``n`` is stamped ``T0 + n`` seconds: its number can be read back from its time."""
    return [
        Reading(
            sensor_id=sensor,
            kind=SensorKind.COVER,
            ts=T0 + timedelta(seconds=n),
            values={"tilt_deg": 0.1},
        )
        for n in range(first, first + count)
    ]


SIZE = len(encode_reading(readings(0, 1)[0]))
"""Encoded bytes of one reading from ``readings`` (all have the same length)."""


def batch_size(count: int) -> int:
    """Bytes of a sealed batch of ``count`` readings: the JSON array around them."""
    return count * SIZE + count - 1 + 2


def numbers(batch: SealedBatch) -> list[int]:
    return [int((r.ts - T0).total_seconds()) for r in batch.readings]
