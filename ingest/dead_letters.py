"""Dead letters as JSON lines, rotated by size, written off the event loop.

One object per line::

    {"id": 7, "kind": "message", "received_at": "...", "topic": "...", "station_id": "st-1",
     "reason": "not_json", "detail": "...", "size": 12, "payload_b64": "..."}

``kind`` is ``message`` (an MQTT message ingest refused; ``payload_b64`` is its bytes as
received) or ``alert`` (an alert the center refused; the payload is the alert as JSON, see
``alert_to_json``). ``id`` is a sequence that survives restarts and rotation.

When the file would grow past ``max_bytes`` it is renamed ``<name>.1`` (``.1`` → ``.2`` …) and
at most ``keep`` rotated files are kept. A write that fails (full disk, unwritable directory)
raises ``DeadLetterError``; the caller decides (ingest stops acknowledging).

``prune(before)`` deletes the letters received before a time (retention by age, beside the
rotation's by size); the last id is kept in ``<name>.last-id`` first, so ids go on growing
after every letter is gone and a node restarts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any, Literal, Protocol

from protocol import TOPIC_ROOT, SensorKind
from rules import Alert
from rules.alerts import CaseTarget, Evidence

log = logging.getLogger(__name__)

DeadLetterKind = Literal["message", "alert"]
ALERT_TOPIC = "alert"
"""The ``topic`` of an alert letter (alerts never travelled on MQTT)."""
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5
_STATION_PREFIX = f"{TOPIC_ROOT}/stations/"


class DeadLetterError(OSError):
    """A dead letter could not be kept (full disk, unwritable directory…).

    An ``OSError``: callers that retry I/O errors until the disk is fixed (and stop
    acknowledging meanwhile) treat it like one; others catch it by name."""


class AsyncDeadLetterSink(Protocol):
    """The non-blocking port: each call returns once the letter is on disk, or raises
    ``DeadLetterError``."""

    async def put(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None: ...

    async def put_alert(
        self, alert: Alert, reason: str, detail: str, received_at: datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as read back. ``id`` is the sequence (``<file>:<line>`` for lines
    written before ids existed)."""

    id: str
    kind: DeadLetterKind
    received_at: datetime
    topic: str
    station_id: str | None
    reason: str
    detail: str
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload)


def station_of(topic: str) -> str | None:
    """The station level of a ``citysense/v1/stations/<id>/…`` topic, even a malformed one."""
    if not topic.startswith(_STATION_PREFIX):
        return None
    return topic[len(_STATION_PREFIX) :].split("/", 1)[0] or None


def _alert_station(payload: bytes) -> str | None:
    """The station of an alert written as JSON bytes by the caller (``None`` if not JSON)."""
    try:
        station = json.loads(payload).get("station_id")
    except (ValueError, AttributeError):
        return None
    return station if isinstance(station, str) else None


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """An ``Alert`` as a JSON-able dict (``alert_from_json`` is the inverse)."""
    return {
        "rule_id": alert.rule_id,
        "title": alert.title,
        "state": alert.state,
        "severity": alert.severity,
        "station_id": alert.station_id,
        "sensor_id": alert.sensor_id,
        "kind": alert.kind.value,
        "field": alert.field,
        "value": alert.value,
        "threshold": alert.threshold,
        "started_at": alert.started_at.isoformat(),
        "at": alert.at.isoformat(),
        "target": {"category": alert.target.category, "code": alert.target.code},
        "evidence": [{"ts": e.ts.isoformat(), "value": e.value} for e in alert.evidence],
        "members": list(alert.members),
        "member_id": alert.member_id,
        "flags": list(alert.flags),
    }


def alert_from_json(data: dict[str, Any]) -> Alert:
    return Alert(
        rule_id=data["rule_id"],
        title=data["title"],
        state=data["state"],
        severity=data["severity"],
        station_id=data["station_id"],
        sensor_id=data["sensor_id"],
        kind=SensorKind(data["kind"]),
        field=data["field"],
        value=float(data["value"]),
        threshold=float(data["threshold"]),
        started_at=datetime.fromisoformat(data["started_at"]),
        at=datetime.fromisoformat(data["at"]),
        target=CaseTarget(data["target"]["category"], data["target"]["code"]),
        evidence=tuple(
            Evidence(datetime.fromisoformat(e["ts"]), float(e["value"])) for e in data["evidence"]
        ),
        members=tuple(data["members"]),
        member_id=data["member_id"],
        flags=tuple(data["flags"]),
    )


def rotated_files(path: Path, keep: int) -> list[Path]:
    """The dead-letter files, oldest first: ``<name>.<keep>`` … ``<name>.1``, ``<name>``."""
    return [path.with_name(f"{path.name}.{n}") for n in range(keep, 0, -1)] + [path]


def _parse_line(line: bytes, file: Path, number: int) -> DeadLetter | None:
    try:
        record = json.loads(line)
        topic = str(record["topic"])
        kind: DeadLetterKind = "alert" if record.get("kind", "") == "alert" else "message"
        if "kind" not in record and topic == ALERT_TOPIC:
            kind = "alert"
        payload = base64.b64decode(record["payload_b64"])
        station = record.get("station_id") or station_of(topic)
        return DeadLetter(
            id=str(record["id"]) if "id" in record else f"{file.name}:{number}",
            kind=kind,
            received_at=datetime.fromisoformat(record["received_at"]),
            topic=topic,
            station_id=station,
            reason=str(record["reason"]),
            detail=str(record.get("detail", "")),
            payload=payload,
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping unreadable dead letter %s line %d: %s", file, number, exc)
        return None


class _FileIndex:
    """Parsed letters of each file, keyed by inode (rotation renames keep it), read
    incrementally: only complete lines are consumed, so a line being written is not torn."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], tuple[int, int, list[DeadLetter]]] = {}
        self._lock = threading.Lock()

    def letters(self, files: Sequence[Path]) -> list[DeadLetter]:
        with self._lock:
            seen: dict[tuple[int, int], tuple[int, int, list[DeadLetter]]] = {}
            result: list[DeadLetter] = []
            for file in files:
                try:
                    with file.open("rb") as source:
                        stat = os.fstat(source.fileno())
                        if not S_ISREG(stat.st_mode):  # a device (tests use /dev/full)
                            continue
                        key = (stat.st_dev, stat.st_ino)
                        offset, lines, letters = self._files.get(key, (0, 0, []))
                        if stat.st_size < offset:  # truncated or replaced: read it again
                            offset, lines, letters = 0, 0, []
                        source.seek(offset)
                        offset, lines = self._read(source, file, offset, lines, letters)
                except FileNotFoundError:
                    continue
                except OSError as exc:  # not a readable file (a directory in its place…)
                    log.warning("dead letters in %s cannot be read: %s", file, exc)
                    continue
                seen[key] = (offset, lines, letters)
                result.extend(letters)
            self._files = seen
            return result

    @staticmethod
    def _read(
        source: Any, file: Path, offset: int, lines: int, letters: list[DeadLetter]
    ) -> tuple[int, int]:
        for line in source:
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            lines += 1
            if line.strip():
                letter = _parse_line(line, file, lines)
                if letter is not None:
                    letters.append(letter)
        return offset, lines


def _received_before(line: bytes, before: datetime) -> bool:
    """The line is a complete letter received before ``before`` (an unreadable one is kept)."""
    if not line.endswith(b"\n"):
        return False
    try:
        return bool(datetime.fromisoformat(json.loads(line)["received_at"]) < before)
    except (ValueError, KeyError, TypeError):
        return False


def select(
    letters: Sequence[DeadLetter],
    *,
    reason: str | None = None,
    station_id: str | None = None,
    since: datetime | None = None,
    kind: DeadLetterKind | None = None,
) -> list[DeadLetter]:
    """The letters that match every given filter, in the order given."""
    return [
        letter
        for letter in letters
        if (reason is None or letter.reason == reason)
        and (station_id is None or letter.station_id == station_id)
        and (since is None or letter.received_at >= since)
        and (kind is None or letter.kind == kind)
    ]


class JsonlDeadLetters:
    """Dead letters in ``path`` (+ rotated files). Implements ``DeadLetterSink`` (``write``,
    blocking), ``AsyncDeadLetterSink`` (``put``, on one writer thread, in order) and the
    center's ``RejectStore`` (``list_rejects``)."""

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        if max_bytes <= 0 or keep < 0:
            raise ValueError("max_bytes must be positive and keep not negative")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self._last_id: int | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._index = _FileIndex()
        with contextlib.suppress(OSError):  # an unwritable directory fails on the first write
            path.parent.mkdir(parents=True, exist_ok=True)

    # -- writing ------------------------------------------------------------------------------

    def write(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        """Blocking append (the ``DeadLetterSink`` port); raises ``DeadLetterError``."""
        if topic == ALERT_TOPIC:
            self._append(
                "alert", topic, _alert_station(payload), payload, reason, detail, received_at
            )
        else:
            self._append("message", topic, station_of(topic), payload, reason, detail, received_at)

    def write_alert(self, alert: Alert, reason: str, detail: str, received_at: datetime) -> None:
        payload = json.dumps(alert_to_json(alert), ensure_ascii=False).encode()
        self._append("alert", ALERT_TOPIC, alert.station_id, payload, reason, detail, received_at)

    async def put(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        """``write`` on the writer thread: the event loop keeps running meanwhile."""
        await self._off_loop(self.write, topic, payload, reason, detail, received_at)

    async def put_alert(
        self, alert: Alert, reason: str, detail: str, received_at: datetime
    ) -> None:
        await self._off_loop(self.write_alert, alert, reason, detail, received_at)

    async def flush(self) -> None:
        """Wait for every write handed to the writer thread so far."""
        if self._writer is not None:
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    async def _off_loop(self, call: Any, *args: Any) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="dead-letters")
        await asyncio.wrap_future(self._writer.submit(call, *args))

    def _append(
        self,
        kind: DeadLetterKind,
        topic: str,
        station_id: str | None,
        payload: bytes,
        reason: str,
        detail: str,
        received_at: datetime,
    ) -> None:
        with self._lock:
            try:
                letter_id = self._next_id()
                record = {
                    "id": letter_id,
                    "kind": kind,
                    "received_at": received_at.isoformat(),
                    "topic": topic,
                    "station_id": station_id,
                    "reason": reason,
                    "detail": detail,
                    "size": len(payload),
                    "payload_b64": base64.b64encode(payload).decode(),
                }
                line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
                self._append_line(line)
            except OSError as exc:
                raise DeadLetterError(
                    f"cannot keep a dead letter in {self.path}: {exc.strerror or exc}"
                ) from exc
            self._last_id = letter_id

    def _append_line(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        size = self.path.stat().st_size if self.path.exists() else 0
        if size and size + len(line) > self.max_bytes:
            self._rotate()
            size = 0
        with self.path.open("ab") as out:
            try:
                out.write(line)
                out.flush()
            except OSError:
                with contextlib.suppress(OSError):  # never leave a torn line behind
                    out.truncate(size)
                raise

    def _rotate(self) -> None:
        files = rotated_files(self.path, self.keep)
        if self.keep == 0:
            self.path.unlink()
            return
        files[0].unlink(missing_ok=True)
        for older, newer in itertools.pairwise(files):
            if newer.exists():
                newer.rename(older)

    def _next_id(self) -> int:
        if self._last_id is None:
            self._last_id = max(
                (int(letter.id) for letter in self.letters() if letter.id.isdigit()),
                default=self._stored_last_id(),
            )
        return self._last_id + 1

    @property
    def _last_id_file(self) -> Path:
        return self.path.with_name(f"{self.path.name}.last-id")

    def _stored_last_id(self) -> int:
        try:
            return int(self._last_id_file.read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    # -- retention ----------------------------------------------------------------------------

    def prune(self, before: datetime) -> int:
        """Delete the letters received before ``before`` (blocking); how many. A file written
        last before then goes whole; one that holds older and newer letters is rewritten
        without the older (a new file renamed over it); newer files are not read past their
        first letter (letters are appended in the order they arrive). Raises
        ``DeadLetterError`` when a file cannot be changed."""
        with self._lock:
            try:
                self._next_id()
                self._last_id_file.write_text(f"{self._last_id}\n", encoding="ascii")
                removed = sum(self._prune_file(file, before) for file in self._files())
            except OSError as exc:
                raise DeadLetterError(
                    f"cannot prune dead letters in {self.path}: {exc.strerror or exc}"
                ) from exc
            if removed:
                self._index = _FileIndex()  # inode numbers of deleted files may come back
            return removed

    def _files(self) -> list[Path]:
        return [f for f in rotated_files(self.path, self.keep) if f.is_file()]

    @staticmethod
    def _prune_file(file: Path, before: datetime) -> int:
        data = file.read_bytes()
        lines = data.splitlines(keepends=True)
        first = next((line for line in lines if line.strip()), None)
        if first is None or not _received_before(first, before):
            return 0
        if file.stat().st_mtime < before.timestamp():  # its newest letter is older too
            file.unlink()
            return sum(1 for line in lines if line.strip())
        kept = [line for line in lines if not _received_before(line, before)]
        removed = sum(1 for line in lines if line.strip()) - sum(1 for k in kept if k.strip())
        if not any(line.strip() for line in kept):
            file.unlink()
            return removed
        fresh = file.with_name(f"{file.name}.pruning")
        fresh.write_bytes(b"".join(kept))
        os.replace(fresh, file)
        return removed

    # -- reading ------------------------------------------------------------------------------

    def letters(self) -> list[DeadLetter]:
        """Every kept letter, oldest first (blocking: reads new lines from the files)."""
        return self._index.letters(rotated_files(self.path, self.keep))

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(self.letters())

    async def list_rejects(
        self,
        *,
        reason: str | None = None,
        station_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[DeadLetter], int]:
        """Newest first, filtered, one page and the total (the ``RejectStore`` port)."""
        letters = await asyncio.to_thread(self.letters)
        matching = select(letters, reason=reason, station_id=station_id, since=since)
        matching.reverse()
        return matching[offset : offset + limit], len(matching)
