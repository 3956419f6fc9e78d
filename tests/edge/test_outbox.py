from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge import MemoryOutbox
from protocol import Reading, SensorKind

T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _readings(first: int, count: int) -> list[Reading]:
    return [
        Reading(
            sensor_id="st-1.cover-01",
            kind=SensorKind.COVER,
            ts=T0 + timedelta(seconds=n),
            values={"tilt_deg": 0.1},
        )
        for n in range(first, first + count)
    ]


def _seconds(readings: tuple[Reading, ...]) -> list[int]:
    return [int((r.ts - T0).total_seconds()) for r in readings]


def test_batches_are_numbered_from_zero_in_arrival_order() -> None:
    outbox = MemoryOutbox(capacity=100, max_batch=4)
    outbox.put(_readings(0, 10))
    sent = []
    while (batch := outbox.next_batch()) is not None:
        sent.append((batch.seq, _seconds(batch.readings)))
        outbox.ack(batch.seq)
    assert sent == [(0, [0, 1, 2, 3]), (1, [4, 5, 6, 7]), (2, [8, 9])]
    assert len(outbox) == 0


def test_an_unacknowledged_batch_is_offered_again_unchanged() -> None:
    outbox = MemoryOutbox(capacity=100, max_batch=4)
    outbox.put(_readings(0, 3))
    first = outbox.next_batch()
    outbox.put(_readings(3, 3))
    assert outbox.next_batch() == first
    assert first is not None
    outbox.ack(first.seq)
    second = outbox.next_batch()
    assert second is not None
    assert (second.seq, _seconds(second.readings)) == (1, [3, 4, 5])


def test_acknowledging_the_wrong_batch_is_an_error() -> None:
    outbox = MemoryOutbox(capacity=10, max_batch=4)
    outbox.put(_readings(0, 2))
    assert outbox.next_batch() is not None
    with pytest.raises(ValueError, match="not the one in flight"):
        outbox.ack(7)


def test_a_full_outbox_evicts_the_oldest_unsealed_readings_and_counts_them() -> None:
    outbox = MemoryOutbox(capacity=6, max_batch=3)
    outbox.put(_readings(0, 4))
    sealed = outbox.next_batch()
    assert sealed is not None
    assert outbox.put(_readings(4, 5)) == 3
    assert outbox.dropped == 3
    assert len(outbox) == 6
    assert outbox.next_batch() == sealed  # the batch in flight is never torn apart
    outbox.ack(sealed.seq)
    rest = outbox.next_batch()
    assert rest is not None
    assert _seconds(rest.readings) == [6, 7, 8]  # 3, 4, 5 were the oldest waiting


def test_capacity_must_hold_a_batch() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MemoryOutbox(capacity=2, max_batch=3)
