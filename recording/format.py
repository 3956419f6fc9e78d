"""The citysense recording format v1: an append-only binary file of MQTT traffic.

Layout (all integers big-endian; full description in ``docs/recording-format.md``)::

    magic   8 bytes   b"CSREC\\x00" + version byte (1) + b"\\n"
    header  u32 length + UTF-8 JSON {"format", "version", "metadata"}
    record* u32 length of the rest | i64 publish time, ns since the Unix epoch (UTC)
            | u8 flags (bits 0-1 QoS, bit 2 retain) | u16 topic length | topic | payload

The same metadata and records always give the same bytes: nothing here reads a clock. A
record cut short at the end of the file (a crash while writing) is a *torn tail*: the reader
reports its size in ``truncated_bytes`` and an appending writer cuts it off.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self, cast

log = logging.getLogger(__name__)

FORMAT_NAME: Final = "citysense-recording"
FORMAT_VERSION: Final = 1
MAGIC_PREFIX: Final = b"CSREC\x00"
MAGIC: Final = MAGIC_PREFIX + bytes([FORMAT_VERSION]) + b"\n"
MAX_HEADER_BYTES: Final = 1 << 20
MAX_TOPIC_BYTES: Final = 0xFFFF
MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024  # MQTT's own limit
QOS_MASK: Final = 0b011
RETAIN_FLAG: Final = 0b100

_LENGTH = struct.Struct(">I")
_FIXED = struct.Struct(">qBH")  # publish time, flags, topic length
_FRAME = struct.Struct(">IqBH")  # record length + _FIXED
MAX_RECORD_BYTES: Final = _FIXED.size + MAX_TOPIC_BYTES + MAX_PAYLOAD_BYTES
_I64 = (-(1 << 63), (1 << 63) - 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CHUNK = 1 << 20


class RecordingError(Exception):
    """A file that is not a valid citysense recording, or a record that cannot be written."""


@dataclass(frozen=True, slots=True)
class Record:
    """One MQTT message as published: time (ns since the Unix epoch, UTC), topic, payload."""

    t_ns: int
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False

    @property
    def ts(self) -> datetime:
        """The publish time as an aware UTC datetime (microsecond precision)."""
        return _EPOCH + timedelta(microseconds=self.t_ns // 1000)


def ns_from_datetime(ts: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime; naive ones are refused."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts.isoformat()} has no place in UTC")
    return (ts - _EPOCH) // _MICROSECOND * 1000


def encode_record(record: Record) -> bytes:
    """The bytes of one record (length prefix included); ``RecordingError`` if it is invalid."""
    return encode_message(record.t_ns, record.topic, record.payload, record.qos, record.retain)


def encode_message(
    t_ns: int, topic: str, payload: bytes, qos: int = 1, retain: bool = False
) -> bytes:
    """``encode_record`` of a record with these fields, without making the ``Record`` (ingest's
    journal writes one a message)."""
    try:
        raw_topic = topic.encode()
    except UnicodeEncodeError:
        raise RecordingError(f"topic {topic[:80]!r} is not valid UTF-8") from None
    if not 0 < len(raw_topic) <= MAX_TOPIC_BYTES or "+" in topic or "#" in topic:
        raise RecordingError(f"invalid publish topic {topic[:80]!r}")
    if qos not in (0, 1, 2):
        raise RecordingError(f"invalid QoS {qos} on {topic!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RecordingError(f"payload of {len(payload)} bytes exceeds MQTT's limit")
    if not _I64[0] <= t_ns <= _I64[1]:
        raise RecordingError(f"publish time {t_ns} does not fit in 64 bits")
    flags = qos | (RETAIN_FLAG if retain else 0)
    length = _FIXED.size + len(raw_topic) + len(payload)
    return _FRAME.pack(length, t_ns, flags, len(raw_topic)) + raw_topic + payload


def encode_header(metadata: Mapping[str, object]) -> bytes:
    """Magic and header block; deterministic (sorted keys, no whitespace)."""
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "metadata": dict(metadata)}
    block = _canonical_json(document).encode()
    if len(block) > MAX_HEADER_BYTES:
        raise RecordingError(f"metadata of {len(block)} bytes exceeds {MAX_HEADER_BYTES}")
    return MAGIC + _LENGTH.pack(len(block)) + block


def _canonical_json(document: Mapping[str, object]) -> str:
    try:
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"metadata is not plain JSON: {exc}") from None


class RecordingReader:
    """Reads a recording: ``metadata`` at once, records by iteration, in file order.

    The file is open only while an iteration runs (one at a time; each starts afresh). A torn
    tail is not an error: after iterating, ``truncated_bytes`` says how many bytes at the end
    did not form a complete record, and ``valid_end`` where the last complete one ends.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._open() as file:
            self.metadata, self.header_size = _read_header(file, self.path)
        self.records_read = 0
        self.valid_end = self.header_size
        self.truncated_bytes = 0
        self._file: BinaryIO | None = None
        self._buffer = b""
        self._offset = 0  # of self._buffer's first byte that is not consumed yet

    def _open(self) -> BinaryIO:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise RecordingError(f"cannot open {self.path}: {exc.strerror}") from None

    def __iter__(self) -> Iterator[Record]:
        self.records_read, self.valid_end, self.truncated_bytes = 0, self.header_size, 0
        self._buffer, self._offset = b"", 0
        self.close()
        self._file = file = self._open()
        try:
            file.seek(self.header_size)
            yield from self._records(file)
        finally:
            self.close()

    def _records(self, file: BinaryIO) -> Iterator[Record]:
        frame_size = _FRAME.size
        while True:
            if not self._fill(file, frame_size):
                return
            length, t_ns, flags, topic_len = _FRAME.unpack_from(self._buffer, self._offset)
            if (
                not _FIXED.size + topic_len <= length <= MAX_RECORD_BYTES
                or flags & ~7
                or (flags & QOS_MASK == QOS_MASK)
            ):
                self._reject_or_tear(file, f"invalid frame (length {length}, flags {flags:#x})")
                return
            if not self._fill(file, _LENGTH.size + length):
                return
            start = self._offset + frame_size
            end = self._offset + _LENGTH.size + length
            try:
                topic = self._buffer[start : start + topic_len].decode()
            except UnicodeDecodeError:
                raise self._corrupt("topic is not UTF-8") from None
            payload = self._buffer[start + topic_len : end]
            yield Record(t_ns, topic, payload, flags & QOS_MASK, bool(flags & RETAIN_FLAG))
            self._offset = end
            self.valid_end += _LENGTH.size + length
            self.records_read += 1

    def _fill(self, file: BinaryIO, needed: int) -> bool:
        """Buffer at least ``needed`` unread bytes; at end of file record a torn tail."""
        available = len(self._buffer) - self._offset
        if available >= needed:
            return True
        more = file.read(max(_CHUNK, needed - available))
        self._buffer = self._buffer[self._offset :] + more
        self._offset = 0
        if len(self._buffer) >= needed:
            return True
        self.truncated_bytes = len(self._buffer)
        if self.truncated_bytes:
            log.warning("%s: torn tail of %d bytes ignored", self.path, self.truncated_bytes)
        return False

    def _reject_or_tear(self, file: BinaryIO, problem: str) -> None:
        """An all-zero rest of the file is a torn tail (power loss); anything else is corrupt."""
        rest = self._buffer[self._offset :] + file.read()
        if rest.count(0) != len(rest):
            raise self._corrupt(problem)
        self.truncated_bytes = len(rest)
        log.warning("%s: zero-filled tail of %d bytes ignored", self.path, len(rest))

    def _corrupt(self, problem: str) -> RecordingError:
        return RecordingError(
            f"{self.path}: corrupt record #{self.records_read} at byte {self.valid_end}: {problem}"
        )

    def close(self) -> None:
        """End a running iteration early (also done by leaving the ``with`` block)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_header(file: BinaryIO, path: Path) -> tuple[dict[str, object], int]:
    magic = file.read(len(MAGIC))
    if magic[: len(MAGIC_PREFIX)] != MAGIC_PREFIX or len(magic) < len(MAGIC):
        raise RecordingError(f"{path} is not a citysense recording (starts with {magic[:8]!r})")
    if magic[len(MAGIC_PREFIX)] != FORMAT_VERSION or magic[-1:] != b"\n":
        raise RecordingError(
            f"{path} is recording format version {magic[len(MAGIC_PREFIX)]}; "
            f"this citysense reads version {FORMAT_VERSION}"
        )
    raw_length = file.read(_LENGTH.size)
    length = _LENGTH.unpack(raw_length)[0] if len(raw_length) == _LENGTH.size else -1
    block = file.read(length) if 0 <= length <= MAX_HEADER_BYTES else b""
    if len(block) != length or length < 0:
        raise RecordingError(f"{path}: the header block is truncated or too long")
    try:
        document = json.loads(block)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordingError(f"{path}: the header block is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise RecordingError(f"{path}: the header does not name the {FORMAT_NAME} format")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise RecordingError(f"{path}: the header's metadata is not a JSON object")
    return metadata, len(MAGIC) + _LENGTH.size + length


class RecordingWriter:
    """Writes a recording; use as a context manager (flushes and syncs on close).

    ``append=True`` continues an existing recording after its last complete record: a torn
    tail is cut off (``repaired_bytes`` says how much) and the file's own header is kept, so
    ``metadata`` must then be empty or equal to it. A missing or empty file starts afresh.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: Mapping[str, object] | None = None,
        *,
        append: bool = False,
        buffer_size: int = _CHUNK,
    ) -> None:
        self.path = Path(path)
        self.records_written = 0
        self.repaired_bytes = 0
        header = encode_header(metadata or {})
        self.created = not (append and self.path.exists() and self.path.stat().st_size > 0)
        """Whether this writer started the file (False: it continues an existing one)."""
        if not self.created:
            self.metadata, end = self._resume(metadata or {})
            self._file = self._open("r+b", buffer_size)
            self._file.seek(end)
            self._file.truncate()
        else:
            self.metadata = dict(metadata or {})
            self._file = self._open("wb", buffer_size)
            self._file.write(header)
            self._file.flush()

    def _open(self, mode: str, buffer_size: int) -> BinaryIO:
        try:
            file = cast(BinaryIO, open(self.path, mode, buffering=buffer_size))  # noqa: SIM115
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror}") from None
        return file

    def _resume(self, metadata: Mapping[str, object]) -> tuple[dict[str, object], int]:
        reader = RecordingReader(self.path)
        for _ in reader:
            pass
        if metadata and _canonical_json(metadata) != _canonical_json(reader.metadata):
            raise RecordingError(
                f"{self.path} already has metadata {reader.metadata}; appending keeps it, "
                "so pass none or the same"
            )
        self.repaired_bytes = reader.truncated_bytes
        if self.repaired_bytes:
            log.warning("%s: cut a torn tail of %d bytes", self.path, self.repaired_bytes)
        return reader.metadata, reader.valid_end

    def write(self, record: Record) -> None:
        self._file.write(encode_record(record))
        self.records_written += 1

    def flush(self) -> None:
        """Hand buffered records to the OS: the file is then valid up to the last one."""
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """What a recording holds, without replaying it."""

    metadata: dict[str, object]
    records: int
    payload_bytes: int
    earliest_t_ns: int | None
    latest_t_ns: int | None
    topics: dict[str, int]
    retained: int
    truncated_bytes: int

    @property
    def span_seconds(self) -> float:
        if self.earliest_t_ns is None or self.latest_t_ns is None:
            return 0.0
        return (self.latest_t_ns - self.earliest_t_ns) / 1e9


def summarize(path: str | os.PathLike[str]) -> RecordingSummary:
    """Read a whole recording once and count what is in it."""
    reader = RecordingReader(path)
    topics: dict[str, int] = {}
    payload_bytes = retained = 0
    earliest = latest = None
    for record in reader:
        topics[record.topic] = topics.get(record.topic, 0) + 1
        payload_bytes += len(record.payload)
        retained += record.retain
        earliest = record.t_ns if earliest is None else min(earliest, record.t_ns)
        latest = record.t_ns if latest is None else max(latest, record.t_ns)
    return RecordingSummary(
        metadata=reader.metadata,
        records=reader.records_read,
        payload_bytes=payload_bytes,
        earliest_t_ns=earliest,
        latest_t_ns=latest,
        topics=topics,
        retained=retained,
        truncated_bytes=reader.truncated_bytes,
    )
