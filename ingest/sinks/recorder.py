"""Every accepted telemetry message, exactly as it came in, in rotating recording files.

Files are ``<directory>/ingest-<UTC timestamp>.csrec`` in the recording format
(``docs/recording-format.md``): topic, the original payload bytes, and the ingest receive time
as the record's time, so ``citysense replay`` and the backtest read real traffic like a
simulated run. A new file is started on start-up, when the current one would pass
``max_file_bytes`` or is ``max_file_age_s`` old; only the newest ``keep_files`` are kept.
File names only ever grow (a clock stepping back does not reorder them), so name order is
write order.

``flush()`` makes everything written so far durable (``fsync`` of the file, of rotated files,
and of the directory when a file was created) and returns the ``RecorderPosition`` just after
the last record: a write-ahead-log position. ``read_recorded(directory, since=position)``
yields what came after it.

Records are written with the format's own ``encode_header`` / ``encode_message`` on a file
this class owns, because ``RecordingWriter`` offers neither an fsync short of closing nor
the byte position.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from ingest.errors import PermanentSinkError, TransientSinkError
from protocol import BatchView, Channel, StationTopic, encode
from protocol.fast import as_model
from recording.format import (
    Record,
    RecordingError,
    RecordingReader,
    encode_header,
    encode_message,
    ns_from_datetime,
)

log = logging.getLogger(__name__)

SINK: Final = "recorder"
PREFIX: Final = "ingest-"
SUFFIX: Final = ".csrec"
_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"
_RECORD_FRAMING: Final = 15  # u32 length, i64 time, u8 flags, u16 topic length


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, order=True)
class RecorderPosition:
    """A place in a recorder's file set: the file's name and a byte offset in it."""

    file: str
    offset: int


def recorded_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The recorder's files in ``directory``, oldest first."""
    return sorted(p for p in Path(directory).glob(f"{PREFIX}*{SUFFIX}") if _stamp_of(p))


def _stamp_of(path: Path) -> datetime | None:
    try:
        stamp = datetime.strptime(path.name[len(PREFIX) : -len(SUFFIX)], _STAMP)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC)


def read_recorded(
    directory: str | os.PathLike[str], since: RecorderPosition | None = None
) -> Iterator[Record]:
    """Records of the whole file set in write order; with ``since``, only those after it.

    ``RecordingError`` if ``since`` names a file that is gone (retention removed it): what was
    after it cannot be replayed in full, and that is never silent.
    """
    files = recorded_files(directory)
    if since is not None:
        if since.file not in {path.name for path in files}:
            raise RecordingError(f"{since.file} is no longer in {directory} (retention?)")
        files = [path for path in files if path.name >= since.file]
    for path in files:
        skip_before = since.offset if since is not None and path.name == since.file else 0
        reader = RecordingReader(path)
        offset = reader.header_size
        for record in reader:
            if offset >= skip_before:
                yield record
            offset += _RECORD_FRAMING + len(record.topic.encode()) + len(record.payload)


class RecorderSink:
    """Appends accepted messages to rotating recording files (see the module docstring).

    Use ``write_message`` with the raw MQTT message; ``write_batch`` (the ``ReadingSink``
    port) re-encodes a decoded batch instead, for callers that no longer have the bytes. Use
    one or the other for a message, not both.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_file_bytes: int = 64 << 20,
        max_file_age_s: float | None = 3600.0,
        keep_files: int | None = 48,
        metadata: Mapping[str, object] | None = None,
        clock: Callable[[], datetime] = utc_now,
        buffer_size: int = 1 << 20,
    ) -> None:
        if keep_files is not None and keep_files < 1:
            raise ValueError(f"keep_files must be at least 1, not {keep_files}")
        self.directory = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_file_age = None if max_file_age_s is None else timedelta(seconds=max_file_age_s)
        self.keep_files = keep_files
        self.metadata = dict(metadata or {})
        self.clock = clock
        self.buffer_size = buffer_size
        self.records_written = 0
        self.files_removed = 0
        self._file: BinaryIO | None = None
        self._path = Path()
        self._offset = 0
        self._records_in_file = 0
        self._opened_at = datetime.min.replace(tzinfo=UTC)
        self._last_stamp: datetime | None = None
        self._closing: list[asyncio.Future[None]] = []
        self._dir_dirty = False

    @property
    def current_file(self) -> Path | None:
        return None if self._file is None else self._path

    @property
    def end(self) -> RecorderPosition | None:
        """The position just after the last record written (buffered: durable after the next
        ``flush``); ``None`` while no file is open."""
        return None if self._file is None else RecorderPosition(self._path.name, self._offset)

    async def write_batch(self, batch: BatchView, received_at: datetime) -> None:
        topic = str(StationTopic(batch.station_id, Channel.TELEMETRY))
        await self.write_message(topic, encode(as_model(batch)), received_at)

    async def write_message(self, topic: str, payload: bytes, received_at: datetime) -> None:
        """Append one message (buffered: durable after the next ``flush``)."""
        try:
            data = encode_message(ns_from_datetime(received_at), topic, payload, qos=1)
        except (RecordingError, ValueError) as exc:
            raise PermanentSinkError(SINK, "unrecordable", str(exc)) from None
        now = self.clock()
        try:
            if self._file is None:
                self._open_new(now)
            elif self._records_in_file and self._due(now, len(data)):
                self._rotate(now)
            self._writing().write(data)
        except OSError as exc:
            self._abandon()
            raise TransientSinkError(SINK, f"cannot write {self._path}: {exc}") from None
        self._offset += len(data)
        self._records_in_file += 1
        self.records_written += 1

    async def flush(self) -> RecorderPosition:
        """Make everything written so far durable; the position just after it."""
        try:
            if self._file is None:
                self._open_new(self.clock())
            file = self._writing()
            file.flush()
            position = RecorderPosition(self._path.name, self._offset)
            fd = os.dup(file.fileno())
        except OSError as exc:
            self._abandon()
            raise TransientSinkError(SINK, f"cannot flush {self._path}: {exc}") from None
        closing, self._closing = self._closing, []
        directory = self.directory if self._dir_dirty else None
        self._dir_dirty = False
        try:
            await asyncio.gather(*closing)
            await asyncio.to_thread(_sync, fd, directory)
        except OSError as exc:
            self._dir_dirty = self._dir_dirty or directory is not None
            raise TransientSinkError(SINK, f"cannot sync {self._path}: {exc}") from None
        return position

    async def aclose(self) -> None:
        """Close the current file durably (and wait for rotated ones)."""
        closing, self._closing = self._closing, []
        if self._file is not None:
            file, self._file = self._file, None
            closing.append(asyncio.get_running_loop().run_in_executor(None, _close, file))
        await asyncio.gather(*closing)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _writing(self) -> BinaryIO:
        assert self._file is not None
        return self._file

    def _due(self, now: datetime, size: int) -> bool:
        too_big = self._offset + size > self.max_file_bytes
        return too_big or (
            self.max_file_age is not None and now - self._opened_at >= self.max_file_age
        )

    def _rotate(self, now: datetime) -> None:
        old = self._writing()
        old.flush()
        self._closing.append(asyncio.get_running_loop().run_in_executor(None, _close, old))
        self._file = None
        self._open_new(now)

    def _open_new(self, now: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = self._next_stamp(now)
        path = self.directory / f"{PREFIX}{stamp.strftime(_STAMP)}{SUFFIX}"
        header = encode_header(
            {**self.metadata, "source": "ingest", "opened_at": stamp.isoformat()}
        )
        file: BinaryIO = open(path, "xb", buffering=self.buffer_size)  # noqa: SIM115
        file.write(header)
        self._file, self._path, self._offset = file, path, len(header)
        self._records_in_file, self._opened_at, self._dir_dirty = 0, now, True
        log.info("recording ingest traffic to %s", path)
        self._apply_retention()

    def _next_stamp(self, now: datetime) -> datetime:
        if self._last_stamp is None:
            stamps = [_stamp_of(path) for path in recorded_files(self.directory)]
            self._last_stamp = max((s for s in stamps if s is not None), default=None)
        stamp = now.astimezone(UTC)
        if self._last_stamp is not None and stamp <= self._last_stamp:
            stamp = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = stamp
        return stamp

    def _apply_retention(self) -> None:
        if self.keep_files is None:
            return
        files = recorded_files(self.directory)
        for path in files[: max(0, len(files) - self.keep_files)]:
            if path != self._path:
                path.unlink(missing_ok=True)
                self.files_removed += 1
                log.info("retention: removed %s", path)

    def _abandon(self) -> None:
        """After an I/O error the file's end is unknown: the next write starts a new file."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:
                log.warning("%s: close after a write error failed too", self._path)


def _close(file: BinaryIO) -> None:
    """Worker thread: flush, fsync and close a file the loop no longer touches."""
    try:
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()


def _sync(fd: int, directory: Path | None) -> None:
    """Worker thread: fsync a duplicated descriptor (then close it), and the directory."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if directory is not None:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
