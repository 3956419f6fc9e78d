"""The outbox contract, run against both implementations (RAM and SQLite)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.outbox import MemoryOutbox, Outbox, OutboxLimits, Priority, SealedBatch
from edge.outbox_sqlite import SqliteOutbox
from protocol import Channel, StationTopic, TelemetryBatch, decode_telemetry, encode
from tests.edge.outbox_helpers import (
    BOOT,
    SIZE,
    T0,
    FakeClock,
    batch_size,
    numbers,
    readings,
)

Make = Callable[..., Outbox]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Make]:
    opened: list[Outbox] = []

    def build(limits: OutboxLimits | None = None, **options: Any) -> Outbox:
        outbox: Outbox
        if request.param == "memory":
            outbox = MemoryOutbox(limits, boot_epoch=BOOT, clock=clock, **options)
        else:
            path = tmp_path / f"outbox-{len(opened)}.db"
            outbox = SqliteOutbox(path, boot_epoch=BOOT, limits=limits, clock=clock, **options)
        opened.append(outbox)
        return outbox

    yield build
    for outbox in opened:
        outbox.close()


def _drain(outbox: Outbox) -> list[tuple[int, list[int]]]:
    sent = []
    while batches := outbox.take(1):
        sent.append((batches[0].seq, numbers(batches[0])))
        assert outbox.ack(batches[0].seq)
    return sent


def test_batches_are_numbered_from_zero_in_arrival_order(make: Make) -> None:
    outbox = make(max_batch=4)
    outbox.put(readings(0, 10))
    assert len(outbox) == 10
    assert _drain(outbox) == [(0, [0, 1, 2, 3]), (1, [4, 5, 6, 7]), (2, [8, 9])]
    assert len(outbox) == 0
    assert outbox.stats.next_seq == 3


def test_the_window_bounds_batches_in_flight_and_acks_come_in_any_order(make: Make) -> None:
    outbox = make(max_batch=2, window=3)
    outbox.put(readings(0, 10))
    first = outbox.take()
    assert [b.seq for b in first] == [0, 1, 2]
    assert outbox.take() == []
    assert outbox.stats.in_flight == 3
    assert outbox.ack(2)
    assert [b.seq for b in outbox.take()] == [3]
    assert outbox.ack(0)
    assert outbox.ack(3)
    assert outbox.ack(1)
    assert not outbox.ack(1)  # a second PUBACK for the same batch changes nothing
    assert [(b.seq, numbers(b)) for b in outbox.take(limit=1)] == [(4, [8, 9])]
    assert len(outbox) == 2


def test_a_batch_offered_again_is_the_same_batch(make: Make) -> None:
    outbox = make(max_batch=4, window=2)
    outbox.put(readings(0, 3))
    (first,) = outbox.take()
    outbox.put(readings(3, 3))
    assert outbox.rewind() == 1
    again = outbox.take(limit=1)
    assert again == [first]
    assert (first.boot_epoch, first.priority, first.count) == (BOOT, Priority.ROUTINE, 3)
    assert outbox.ack(first.seq)
    (second,) = outbox.take()
    assert (second.seq, numbers(second)) == (1, [3, 4, 5])


def test_acknowledging_a_batch_never_sealed_is_an_error(make: Make) -> None:
    outbox = make(max_batch=4)
    outbox.put(readings(0, 2))
    assert len(outbox.take()) == 1
    with pytest.raises(ValueError, match="never sealed"):
        outbox.ack(7)


def test_alarm_readings_are_sent_first(make: Make) -> None:
    outbox = make(max_batch=3, window=1)
    outbox.put(readings(0, 5))
    (routine,) = outbox.take()
    outbox.rewind()  # the routine batch is sealed and waits to go again
    outbox.put(readings(100, 2), Priority.ALARM)
    sent = []
    while batches := outbox.take():
        sent.append((batches[0].seq, batches[0].priority, numbers(batches[0])))
        outbox.ack(batches[0].seq)
    assert sent == [
        (1, Priority.ALARM, [100, 101]),
        (0, Priority.ROUTINE, [0, 1, 2]),
        (2, Priority.ROUTINE, [3, 4]),
    ]
    assert routine.seq == 0


def test_the_payload_is_the_telemetry_batch_byte_for_byte(make: Make) -> None:
    outbox = make(max_batch=4)
    outbox.put(readings(0, 3))
    (sealed,) = outbox.take()
    sent_at = T0 + timedelta(seconds=9)
    payload = sealed.payload("st-1", sent_at)
    expected = TelemetryBatch(
        station_id="st-1",
        boot_epoch=BOOT,
        seq=sealed.seq,
        sent_at=sent_at,
        readings=readings(0, 3),
    )
    assert payload == encode(expected)
    assert decode_telemetry(StationTopic("st-1", Channel.TELEMETRY), payload) == expected


def test_over_max_bytes_the_oldest_routine_readings_go_and_are_counted(make: Make) -> None:
    outbox = make(OutboxLimits(max_bytes=10 * SIZE), max_batch=20)
    assert outbox.put(readings(0, 10)) == 0
    assert outbox.put(readings(10, 3)) == 3
    assert len(outbox) == 10
    assert outbox.stats.bytes == 10 * SIZE
    (marker,) = outbox.pending_gaps()
    assert (marker.reason, marker.readings, marker.batches) == ("bytes", 3, 0)
    assert (marker.first_ts, marker.last_ts) == (T0, T0 + timedelta(seconds=2))
    assert outbox.stats.evicted_readings == 3
    (batch,) = outbox.take()
    assert numbers(batch) == list(range(3, 13))


def test_alarm_readings_are_kept_while_routine_ones_can_go(make: Make) -> None:
    outbox = make(OutboxLimits(max_bytes=10 * SIZE), max_batch=20)
    outbox.put(readings(100, 4), Priority.ALARM)
    assert outbox.put(readings(0, 6)) == 0
    assert outbox.put(readings(6, 6)) == 6
    sent = []
    while batches := outbox.take(1):
        sent.append((batches[0].priority, numbers(batches[0])))
        outbox.ack(batches[0].seq)
    assert sent == [
        (Priority.ALARM, [100, 101, 102, 103]),
        (Priority.ROUTINE, [6, 7, 8, 9, 10, 11]),
    ]


def test_alarms_alone_over_the_bound_lose_their_oldest(make: Make) -> None:
    outbox = make(OutboxLimits(max_bytes=5 * SIZE), max_batch=20)
    assert outbox.put(readings(100, 7), Priority.ALARM) == 2
    (batch,) = outbox.take()
    assert numbers(batch) == [102, 103, 104, 105, 106]


def test_a_batch_in_flight_is_never_evicted_a_rewound_one_goes_whole(make: Make) -> None:
    outbox = make(OutboxLimits(max_bytes=batch_size(4) + 4 * SIZE), max_batch=4, window=1)
    outbox.put(readings(0, 8))
    (in_flight,) = outbox.take()
    assert outbox.put(readings(8, 1)) == 1  # the oldest waiting reading (4) goes, not the batch
    outbox.rewind()
    assert outbox.put(readings(9, 1)) == 4  # now the sealed batch is the oldest: whole
    (bytes_marker,) = outbox.pending_gaps()
    assert (bytes_marker.readings, bytes_marker.batches) == (5, 1)
    assert (bytes_marker.first_seq, bytes_marker.last_seq) == (in_flight.seq, in_flight.seq)
    assert outbox.stats.evicted_batches == 1
    assert not outbox.ack(in_flight.seq)  # a late PUBACK for a given-up batch
    assert _drain(outbox) == [(1, [5, 6, 7, 8]), (2, [9])]


def test_routine_readings_older_than_max_age_go_alarms_stay(make: Make, clock: FakeClock) -> None:
    outbox = make(OutboxLimits(max_age=timedelta(seconds=60)), max_batch=20)
    outbox.put(readings(0, 3))
    outbox.put(readings(100, 1), Priority.ALARM)
    clock.advance(30)
    outbox.put(readings(3, 3))
    clock.advance(31)
    sent = [(b.priority, numbers(b)) for b in outbox.take()]
    assert sent == [(Priority.ALARM, [100]), (Priority.ROUTINE, [3, 4, 5])]
    (marker,) = outbox.pending_gaps()
    assert (marker.reason, marker.readings) == ("age", 3)
    assert outbox.stats.evicted_readings == 3


def test_gap_markers_close_when_read_and_leave_when_announced(make: Make) -> None:
    outbox = make(OutboxLimits(max_bytes=4 * SIZE), max_batch=4)
    outbox.put(readings(0, 6))
    first = outbox.pending_gaps()
    outbox.put(readings(6, 1))
    second = outbox.pending_gaps()
    assert [(m.readings, m.boot_epoch) for m in first] == [(2, BOOT)]
    assert [(m.marker_id, m.readings) for m in second] == [
        (first[0].marker_id, 2),
        (first[0].marker_id + 1, 1),
    ]
    assert sum(m.readings for m in second) == outbox.stats.evicted_readings == 3
    assert outbox.gap_announced(first[0].marker_id)
    assert not outbox.gap_announced(first[0].marker_id)
    assert [m.readings for m in outbox.pending_gaps()] == [1]


def test_acknowledged_batches_are_retained_for_resend(make: Make, clock: FakeClock) -> None:
    limits = OutboxLimits(retain_bytes=2 * batch_size(2), retain_age=timedelta(seconds=60))
    outbox = make(limits, max_batch=2, window=4)
    outbox.put(readings(0, 8))
    sent = {b.seq: b for b in outbox.take()}
    for seq in (3, 0, 2, 1):
        outbox.ack(seq)
    assert (outbox.stats.retained_batches, outbox.stats.retention_evicted) == (2, 2)
    outbox.put(readings(8, 2))
    (waiting,) = outbox.take()
    answer = outbox.resend(0, 9)
    assert answer.batches == (sent[1], sent[2])  # byte-identical, in seq order
    assert answer.pending == (waiting.seq,)
    assert answer.evicted == ((0, 0), (3, 3))
    assert answer.unknown == (5, 9)
    clock.advance(61)
    assert outbox.resend(1, 2).evicted == ((1, 2),)
    assert outbox.stats.retained_batches == 0
    assert outbox.stats.evicted_readings == 0  # leaving the retention window loses nothing


def test_the_readings_cap_of_the_agent_setting_counts_readings(make: Make) -> None:
    outbox = make(OutboxLimits(max_readings=6), max_batch=3)
    outbox.put(readings(0, 4))
    (sealed,) = outbox.take(1)
    assert outbox.put(readings(4, 5)) == 3
    assert len(outbox) == 6
    assert outbox.ack(sealed.seq)
    assert _drain(outbox) == [(1, [6, 7, 8])]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        OutboxLimits(max_bytes=0)
    with pytest.raises(ValueError, match="max_age"):
        OutboxLimits(max_age=timedelta(0))
    with pytest.raises(ValueError, match="max_batch"):
        MemoryOutbox(OutboxLimits(max_readings=2), max_batch=3)
    with pytest.raises(ValueError, match="window"):
        MemoryOutbox(window=0)


@pytest.mark.parametrize("seed", range(4))
def test_both_implementations_answer_alike(seed: int, tmp_path: Path) -> None:
    """Random operations in lockstep: every answer and every counter must be the same."""
    rng = random.Random(seed)
    clock = FakeClock()
    limits = OutboxLimits(
        max_bytes=40 * SIZE,
        max_age=timedelta(seconds=50),
        retain_bytes=3 * batch_size(4),
        retain_age=timedelta(seconds=20),
    )
    memory = MemoryOutbox(limits, boot_epoch=BOOT, max_batch=4, window=3, clock=clock)
    with SqliteOutbox(
        tmp_path / "o.db", boot_epoch=BOOT, limits=limits, max_batch=4, window=3, clock=clock
    ) as disk:
        both: tuple[Outbox, Outbox] = (memory, disk)
        n, in_flight = 0, set[int]()
        for _ in range(300):
            op = rng.choice(["put", "put", "alarm", "take", "ack", "ack", "rewind", "time", "ask"])
            if op in ("put", "alarm"):
                count = rng.randint(1, 9)
                priority = Priority.ALARM if op == "alarm" else Priority.ROUTINE
                got: Any = [o.put(readings(n, count), priority) for o in both]
                n += count
            elif op == "take":
                limit = rng.choice([None, 1, 2])
                got = [o.take(limit) for o in both]
                in_flight.update(b.seq for b in got[0])
            elif op == "ack" and in_flight:
                seq = rng.choice(sorted(in_flight))
                in_flight.discard(seq)
                got = [o.ack(seq) for o in both]
            elif op == "rewind":
                got = [o.rewind() for o in both]
                in_flight.clear()
            elif op == "time":
                clock.advance(rng.uniform(0, 15))
                got = [None, None]
            else:
                first = rng.randint(0, max(0, memory.stats.next_seq))
                last = first + rng.randint(0, 5)
                got = [o.resend(first, last) for o in both]
            assert got[0] == got[1], op
            assert memory.stats == disk.stats
            assert len(memory) == len(disk)
        assert memory.pending_gaps() == disk.pending_gaps()
        assert memory.stats.evicted_readings == sum(m.readings for m in memory.pending_gaps())
        assert memory.stats.evicted_readings > 0, "the run should have evicted something"


def test_outboxes_satisfy_the_port(tmp_path: Path) -> None:
    def use(outbox: Outbox) -> list[SealedBatch]:
        outbox.put(readings(0, 1))
        return outbox.take()

    assert len(use(MemoryOutbox())) == 1
    with SqliteOutbox(tmp_path / "o.db", boot_epoch=BOOT) as disk:
        assert len(use(disk)) == 1
