"""The recording format: round trips, determinism, torn tails, appends and refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from recording.format import (
    MAGIC,
    Record,
    RecordingError,
    RecordingReader,
    RecordingWriter,
    encode_record,
    ns_from_datetime,
    summarize,
)

T0 = ns_from_datetime(datetime(2026, 1, 1, 8, 0, tzinfo=UTC))
METADATA = {"source": "simulate", "scenario": "burst-main", "seed": 7, "note": "郑州 金水区"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "recording-format.md"


def sample_records() -> list[Record]:
    station = "citysense/v1/stations/st-410105-001"
    return [
        Record(T0, f"{station}/state", b'{"v":1,"status":"online"}', qos=1, retain=True),
        Record(T0 + 1_000_000, f"{station}/telemetry", bytes(range(256)), qos=1),
        Record(T0 + 2_000_000, f"{station}/telemetry", b"", qos=0),
        Record(T0 + 1_500_000, "城管/传感器/井盖", b"\x00\xff garbage \x00", qos=2),
        Record(T0 + 3_000_000, f"{station}/state", b"offline", qos=2, retain=True),
    ]


def write(path: Path, records: list[Record], metadata: dict[str, object] | None = None) -> Path:
    with RecordingWriter(path, METADATA if metadata is None else metadata) as writer:
        for record in records:
            writer.write(record)
    return path


def read_all(path: Path) -> tuple[RecordingReader, list[Record]]:
    reader = RecordingReader(path)
    return reader, list(reader)


def test_records_and_metadata_survive_a_round_trip(tmp_path: Path) -> None:
    records = sample_records()
    reader, read = read_all(write(tmp_path / "run.csrec", records))
    assert read == records
    assert reader.metadata == METADATA
    assert reader.truncated_bytes == 0
    assert reader.records_read == len(records)


def test_publish_times_are_aware_utc_datetimes() -> None:
    ts = datetime(2026, 5, 1, 16, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    record = Record(ns_from_datetime(ts), "a/b", b"")
    assert record.ts == ts
    assert record.ts.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        ns_from_datetime(datetime(2026, 5, 1))


def test_the_same_input_gives_a_byte_identical_file(tmp_path: Path) -> None:
    first = write(tmp_path / "a.csrec", sample_records())
    reordered_keys = dict(reversed(list(METADATA.items())))
    second = write(tmp_path / "b.csrec", sample_records(), reordered_keys)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().startswith(MAGIC)


def test_an_empty_recording_is_valid(tmp_path: Path) -> None:
    reader, read = read_all(write(tmp_path / "empty.csrec", [], {}))
    assert read == []
    assert reader.metadata == {}
    assert reader.truncated_bytes == 0


@pytest.mark.parametrize("cut", [1, 3, 4, 10, 20])
def test_a_torn_tail_is_reported_not_raised(tmp_path: Path, cut: int) -> None:
    records = sample_records()
    path = write(tmp_path / "torn.csrec", records)
    last = len(encode_record(records[-1]))
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - cut)
    reader, read = read_all(path)
    assert read == records[:-1]
    assert reader.truncated_bytes == last - cut


def test_a_zero_filled_tail_counts_as_torn(tmp_path: Path) -> None:
    path = write(tmp_path / "zeros.csrec", sample_records())
    with path.open("ab") as file:
        file.write(bytes(4096))
    reader, read = read_all(path)
    assert read == sample_records()
    assert reader.truncated_bytes == 4096


def test_appending_after_a_torn_tail_repairs_it(tmp_path: Path) -> None:
    records = sample_records()
    path = write(tmp_path / "torn.csrec", records)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 5)
    extra = Record(T0 + 9_000_000, "a/b", b"after the crash")
    with RecordingWriter(path, append=True) as writer:
        writer.write(extra)
    assert writer.repaired_bytes == len(encode_record(records[-1])) - 5
    assert writer.metadata == METADATA
    reader, read = read_all(path)
    assert read == [*records[:-1], extra]
    assert reader.truncated_bytes == 0


def test_appending_keeps_the_header_and_refuses_other_metadata(tmp_path: Path) -> None:
    path = write(tmp_path / "run.csrec", sample_records()[:1])
    with RecordingWriter(path, METADATA, append=True) as writer:
        writer.write(sample_records()[1])
    assert writer.repaired_bytes == 0
    with pytest.raises(RecordingError, match="already has metadata"):
        RecordingWriter(path, {"source": "other"}, append=True)
    assert [r.topic for r in read_all(path)[1]] == [r.topic for r in sample_records()[:2]]


def test_appending_to_a_missing_file_starts_one(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "new.csrec", METADATA, append=True) as writer:
        writer.write(sample_records()[0])
    assert writer.created
    assert read_all(tmp_path / "new.csrec")[1] == sample_records()[:1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"json": "document"}\n', "not a citysense recording"),
        (b"CSREC\x00\x02\n\x00\x00\x00\x02{}", "version 2"),
        (MAGIC + b"\x00\x00\x00\x40{}", "truncated"),
        (MAGIC + b"\x00\x00\x00\x05nope!", "not JSON"),
        (MAGIC + b"\x00\x00\x00\x02{}", "does not name"),
    ],
)
def test_a_file_that_is_not_a_recording_is_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        RecordingReader(path)
    with pytest.raises(RecordingError):
        RecordingWriter(path, append=True)
    assert path.read_bytes() == content


def test_a_zero_byte_file_is_no_recording_but_appending_starts_one(tmp_path: Path) -> None:
    path = tmp_path / "crashed-at-birth.csrec"
    path.touch()
    with pytest.raises(RecordingError, match="not a citysense recording"):
        RecordingReader(path)
    with RecordingWriter(path, METADATA, append=True) as writer:
        assert writer.created
    assert read_all(path)[0].metadata == METADATA


def test_a_missing_file_is_a_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot open"):
        RecordingReader(tmp_path / "missing.csrec")


def test_corruption_inside_the_file_names_the_record(tmp_path: Path) -> None:
    records = sample_records()
    path = write(tmp_path / "corrupt.csrec", records)
    data = bytearray(path.read_bytes())
    first_flags = data.index(records[0].topic.encode()) - 3
    data[first_flags] = 0b11  # QoS 3 does not exist
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=r"record #0 at byte \d+"):
        read_all(path)


@pytest.mark.parametrize(
    "record",
    [
        Record(T0, "citysense/+/telemetry", b""),
        Record(T0, "citysense/#", b""),
        Record(T0, "", b""),
        Record(T0, "a/b", b"", qos=3),
        Record(2**63, "a/b", b""),
    ],
)
def test_invalid_records_are_refused_before_anything_is_written(
    tmp_path: Path, record: Record
) -> None:
    path = tmp_path / "run.csrec"
    with RecordingWriter(path, METADATA) as writer:
        writer.write(sample_records()[0])
        with pytest.raises(RecordingError):
            writer.write(record)
    assert read_all(path)[1] == sample_records()[:1]


def test_metadata_must_be_plain_json(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="not plain JSON"):
        RecordingWriter(tmp_path / "run.csrec", {"when": datetime.now(UTC)})


def test_summary_counts_what_the_recording_holds(tmp_path: Path) -> None:
    summary = summarize(write(tmp_path / "run.csrec", sample_records()))
    assert summary.records == 5
    assert summary.retained == 2
    assert summary.payload_bytes == sum(len(r.payload) for r in sample_records())
    assert summary.span_seconds == pytest.approx(0.003)
    assert summary.topics["citysense/v1/stations/st-410105-001/telemetry"] == 2
    assert summary.metadata == METADATA


def test_the_documented_twenty_line_reader_reads_our_files(tmp_path: Path) -> None:
    """The standalone reader in docs/recording-format.md, run as documented."""
    snippet = re.search(r"```python\n(import json.*?)```", DOC.read_text(), re.DOTALL)
    assert snippet is not None
    assert len(snippet.group(1).strip().splitlines()) <= 25
    namespace: dict[str, object] = {}
    exec(snippet.group(1), namespace)
    records = sample_records()
    path = write(tmp_path / "run.csrec", records)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 2)
    read_csrec = namespace["read_csrec"]
    assert callable(read_csrec)
    (header, _), *rows = list(read_csrec(path))
    assert header["metadata"] == METADATA
    assert rows == [(r.t_ns, r.topic, r.payload, r.qos, r.retain) for r in records[:-1]]
