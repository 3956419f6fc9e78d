from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ingest.errors import PermanentSinkError
from ingest.sinks.recorder import RecorderPosition, RecorderSink, read_recorded, recorded_files
from protocol import Channel, StationTopic, decode_telemetry, encode
from recording.format import RecordingError, RecordingReader, ns_from_datetime
from tests.factories import T0, batch, tilt

TOPIC = str(StationTopic("st-1", Channel.TELEMETRY))


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def payload(i: int, size: int = 1000) -> bytes:
    return f"{i:06d}".encode().ljust(size, b".")


def records_of(paths: list[Path]) -> list[tuple[int, str, bytes]]:
    out = []
    for path in paths:
        reader = RecordingReader(path)
        out += [(r.t_ns, r.topic, r.payload) for r in reader]
        assert reader.truncated_bytes == 0
    return out


async def test_rotates_by_size_and_the_set_reads_back_in_order(tmp_path: Path) -> None:
    clock = Clock()
    async with RecorderSink(tmp_path, max_file_bytes=4096, keep_files=None, clock=clock) as rec:
        for i in range(10):
            await rec.write_message(TOPIC, payload(i), T0 + timedelta(seconds=i))
    files = recorded_files(tmp_path)
    assert len(files) == 4  # 3 records of ~1 kB per 4 kB file
    assert all(path.stat().st_size <= 4096 for path in files)
    assert [path.name for path in files] == sorted(path.name for path in files)
    assert records_of(files) == [
        (ns_from_datetime(T0 + timedelta(seconds=i)), TOPIC, payload(i)) for i in range(10)
    ]
    assert RecordingReader(files[0]).metadata == {
        "source": "ingest",
        "opened_at": "2026-07-01T08:00:00+00:00",
    }
    assert files[0].name == "ingest-20260701T080000.000000Z.csrec"


async def test_rotates_by_age_without_empty_files(tmp_path: Path) -> None:
    clock = Clock()
    async with RecorderSink(tmp_path, max_file_age_s=60, clock=clock) as rec:
        await rec.write_message(TOPIC, b"a", clock.now)
        clock.now += timedelta(seconds=59)
        await rec.write_message(TOPIC, b"b", clock.now)
        clock.now += timedelta(minutes=30)  # idle: no file is started until a message comes
        await rec.write_message(TOPIC, b"c", clock.now)
    files = recorded_files(tmp_path)
    assert [[p for _, _, p in records_of([path])] for path in files] == [[b"a", b"b"], [b"c"]]
    assert files[1].name == "ingest-20260701T083059.000000Z.csrec"


async def test_retention_keeps_the_newest_files(tmp_path: Path) -> None:
    async with RecorderSink(tmp_path, max_file_bytes=2048, keep_files=2, clock=Clock()) as rec:
        for i in range(8):
            await rec.write_message(TOPIC, payload(i), T0)
    files = recorded_files(tmp_path)
    assert len(files) == 2
    assert rec.files_removed == 6
    assert [p[:6] for _, _, p in records_of(files)] == [b"000006", b"000007"]


async def test_flush_makes_it_durable_and_returns_the_position_after_it(tmp_path: Path) -> None:
    clock = Clock()
    rec = RecorderSink(tmp_path, max_file_bytes=4096, clock=clock)
    for i in range(2):
        await rec.write_message(TOPIC, payload(i), T0)
    first = await rec.flush()
    current = rec.current_file
    assert current is not None
    assert first == RecorderPosition(current.name, current.stat().st_size)
    for i in range(2, 7):  # crosses two rotations
        await rec.write_message(TOPIC, payload(i), T0)
    second = await rec.flush()
    assert second > first
    assert second.offset == (tmp_path / second.file).stat().st_size
    assert [r.payload[:6] for r in read_recorded(tmp_path, since=first)] == [
        f"{i:06d}".encode() for i in range(2, 7)
    ]
    assert list(read_recorded(tmp_path, since=second)) == []
    assert len(list(read_recorded(tmp_path))) == 7
    await rec.aclose()


async def test_flush_before_any_message_gives_the_start_of_a_new_file(tmp_path: Path) -> None:
    async with RecorderSink(tmp_path, clock=Clock()) as rec:
        position = await rec.flush()
        await rec.write_message(TOPIC, b"x", T0)
    assert [r.payload for r in read_recorded(tmp_path, since=position)] == [b"x"]


async def test_a_restart_starts_a_new_file_after_the_old_ones_even_if_the_clock_went_back(
    tmp_path: Path,
) -> None:
    async with RecorderSink(tmp_path, clock=Clock(T0)) as rec:
        await rec.write_message(TOPIC, b"before", T0)
    async with RecorderSink(tmp_path, clock=Clock(T0 - timedelta(hours=1))) as rec:
        await rec.write_message(TOPIC, b"after", T0)
    _, second = recorded_files(tmp_path)
    assert second.name == "ingest-20260701T080000.000001Z.csrec"
    assert [r.payload for r in read_recorded(tmp_path)] == [b"before", b"after"]


async def test_a_position_in_a_file_retention_removed_is_an_error(tmp_path: Path) -> None:
    rec = RecorderSink(tmp_path, max_file_bytes=2048, keep_files=1, clock=Clock())
    await rec.write_message(TOPIC, payload(0), T0)
    position = await rec.flush()
    for i in range(1, 4):
        await rec.write_message(TOPIC, payload(i), T0)
    await rec.aclose()
    with pytest.raises(RecordingError, match="no longer"):
        list(read_recorded(tmp_path, since=position))


async def test_write_batch_records_the_batch_on_its_topic(tmp_path: Path) -> None:
    sent = batch([tilt(0, 3), tilt(1, 4)], seq=3)
    async with RecorderSink(tmp_path, clock=Clock()) as rec:
        await rec.write_batch(sent, T0)
    (record,) = read_recorded(tmp_path)
    assert record.topic == TOPIC
    assert record.payload == encode(sent)
    assert decode_telemetry(StationTopic.parse(record.topic), record.payload) == sent


async def test_an_unrecordable_message_is_refused_with_a_reason(tmp_path: Path) -> None:
    async with RecorderSink(tmp_path, clock=Clock()) as rec:
        with pytest.raises(PermanentSinkError) as caught:
            await rec.write_message("citysense/+/x", b"", T0)
        naive = datetime(2026, 7, 1)  # naive: the point of the test
        with pytest.raises(PermanentSinkError):
            await rec.write_message(TOPIC, b"", naive)
    assert caught.value.reason == "unrecordable"
    assert rec.records_written == 0


async def test_a_torn_tail_after_the_flushed_position_is_skipped(tmp_path: Path) -> None:
    rec = RecorderSink(tmp_path, clock=Clock())
    await rec.write_message(TOPIC, b"kept", T0)
    position = await rec.flush()
    await rec.write_message(TOPIC, b"lost in the crash", T0)
    await rec.aclose()
    path = tmp_path / position.file
    os.truncate(path, position.offset + 7)  # a crash cut the unflushed record short
    assert [r.payload for r in read_recorded(tmp_path)] == [b"kept"]
    reader = RecordingReader(path)
    assert len(list(reader)) == 1
    assert reader.truncated_bytes == 7
