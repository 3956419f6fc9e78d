"""The JSON reading format of a gateway feed, decoded and checked against the wire contract.

A message (one UDP datagram, say) holds one reading as a JSON object or several as an array::

    {"sensor_id": "st-410105-001.cover-01", "kind": "cover",
     "ts": "2026-07-01T08:00:00.250+08:00", "values": {"tilt_deg": 1.5, "battery_v": 3.58}}

Each reading is a ``protocol.Reading`` (per-kind value names, finite JSON numbers, RFC 3339
times with an offset) of a sensor declared in the station's inventory. ``kind`` may be left out
(the inventory's is used); ``ts`` may be left out, and the reading is then stamped with the
gateway's receive time (counted as ``gateway_stamped``). A reading that fails is refused with a
reason and the others of the same message still go; a message that cannot be read at all is
refused once. Nothing here raises on bad input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails, from_json

from protocol import MAX_READINGS_PER_BATCH, Reading, SensorInfo

FeedRejectReason = Literal[
    "foreign_sender",
    "too_large",
    "not_json",
    "too_deep",
    "too_many",
    "invalid",
    "unknown_sensor",
    "kind_mismatch",
    "unknown_value",
    "missing_value",
    "bad_time",
    "internal_error",
]
"""Why a message or a reading of the feed is refused (the key of ``FeedStats.rejected``);
``internal_error``: the feed's own code failed on it (logged with its traceback).

Per message: ``foreign_sender`` (not in ``allow_from``), ``too_large``, ``not_json``,
``too_deep``, ``too_many`` (more readings than a batch holds), ``invalid`` (neither an object
nor an array). Per reading: ``invalid`` (not an object, a bad field, an extra field),
``unknown_sensor`` (not in the inventory), ``kind_mismatch`` (a kind other than the
inventory's), ``unknown_value`` / ``missing_value`` (value names of another kind, or without
the kind's primary value), ``bad_time`` (not RFC 3339 with an offset, or out of range)."""
FEED_REJECT_REASONS: Final[tuple[FeedRejectReason, ...]] = get_args(FeedRejectReason)
DETAIL_CHARS = 200


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: FeedRejectReason
    detail: str


@dataclass(slots=True)
class FeedStats:
    """Counters of one feed; nothing leaves it uncounted."""

    messages: int = 0
    accepted: int = 0
    """Readings that passed the checks."""
    rejected: Counter[FeedRejectReason] = field(default_factory=Counter)
    gateway_stamped: int = 0
    """Accepted readings without a device time, stamped with the gateway's receive time."""
    dropped: int = 0
    """Accepted readings evicted from a full buffer before the agent read them (oldest first)."""


class FeedDecoder:
    """Turns one message of the feed into readings and refusals; counts both."""

    def __init__(
        self,
        sensors: Sequence[SensorInfo],
        *,
        max_bytes: int = 65_507,
        max_readings: int = MAX_READINGS_PER_BATCH,
    ) -> None:
        self._sensors = {sensor.sensor_id: sensor for sensor in sensors}
        if len(self._sensors) != len(sensors):
            raise ValueError("the sensor inventory names a sensor twice")
        self._max_bytes = max_bytes
        self._max_readings = max_readings
        self.stats = FeedStats()

    def decode(self, data: bytes, received_at: datetime) -> tuple[list[Reading], list[Rejected]]:
        """The readings of ``data`` and what was refused; ``received_at`` is the gateway clock."""
        self.stats.messages += 1
        try:
            items = self._items(data)
        except _RefusedError as refused:
            return [], [self._count(refused.reason, refused.detail)]
        readings, rejects = [], []
        for item in items:
            try:
                readings.append(self._reading(item, received_at))
            except _RefusedError as refused:
                rejects.append(self._count(refused.reason, refused.detail))
            except (ArithmeticError, TypeError, ValueError) as exc:  # a bug here must not stop
                rejects.append(self._count("invalid", f"{type(exc).__name__}: {exc}"))
        self.stats.accepted += len(readings)
        return readings, rejects

    def refuse(self, reason: FeedRejectReason, detail: str) -> Rejected:
        """Count a message refused before decoding (by the transport)."""
        self.stats.messages += 1
        return self._count(reason, detail)

    def _count(self, reason: FeedRejectReason, detail: str) -> Rejected:
        self.stats.rejected[reason] += 1
        return Rejected(reason, detail[:DETAIL_CHARS])

    def _items(self, data: bytes) -> list[Any]:
        if len(data) > self._max_bytes:
            raise _RefusedError("too_large", f"{len(data)} bytes > {self._max_bytes}")
        try:
            document = from_json(data)
        except ValueError as exc:
            deep = "recursion limit" in str(exc)
            raise _RefusedError("too_deep" if deep else "not_json", str(exc)) from None
        if isinstance(document, dict):
            return [document]
        if not isinstance(document, list):
            kind = type(document).__name__
            raise _RefusedError("invalid", f"a {kind}, not an object or an array")
        if len(document) > self._max_readings:
            raise _RefusedError("too_many", f"{len(document)} readings > {self._max_readings}")
        return document

    def _reading(self, item: Any, received_at: datetime) -> Reading:
        if not isinstance(item, dict):
            raise _RefusedError("invalid", f"a reading is an object, not {type(item).__name__}")
        sensor_id = item.get("sensor_id")
        sensor = self._sensors.get(sensor_id) if isinstance(sensor_id, str) else None
        if sensor is None:
            raise _RefusedError("unknown_sensor", f"sensor {sensor_id!r} is not in the inventory")
        kind = item.setdefault("kind", sensor.kind.value)
        if kind != sensor.kind.value:
            raise _RefusedError(
                "kind_mismatch", f"{sensor_id}: kind {kind!r}, inventory says {sensor.kind.value}"
            )
        stamped = "ts" not in item
        if stamped:
            item["ts"] = received_at
        try:
            reading = Reading.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "reading"
            raise _RefusedError(_reason(first), f"{sensor_id}: {where}: {first['msg']}") from None
        self.stats.gateway_stamped += stamped
        return reading


def _reason(error: ErrorDetails) -> FeedRejectReason:
    if error["type"] == "unknown_value":
        return "unknown_value"
    if error["type"] == "missing_value":
        return "missing_value"
    if error["loc"][:1] == ("ts",):
        return "bad_time"
    return "invalid"


class _RefusedError(Exception):
    def __init__(self, reason: FeedRejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: FeedRejectReason = reason
        self.detail = detail
