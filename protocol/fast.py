"""The telemetry decoder ingest runs on: msgspec in front, the pydantic models behind.

``protocol.models.TelemetryBatch`` stays the one contract (the AsyncAPI document, every reject
reason). Decoding it costs ~2 µs per reading, most of it in regular expressions and timestamp
bounds run per reading; at 100 readings per message that was a third of ingest's time. This
module decodes the same JSON with msgspec into frozen structs (``FastBatch``, ``FastReading``)
and checks in Python, once per batch or once per distinct id, what msgspec cannot:

- sensor ids: the contract's pattern, checked once per distinct id (``KnownIds``, bounded);
- value names: a subset of the kind's names with the required one present;
- timestamps: the contract's ``[TIME_MIN, TIME_END)`` bounds.

**Only the models refuse.** When the fast path finds anything wrong, or meets a payload whose
meaning msgspec might read differently from pydantic (a timestamp with more than six fractional
digits: msgspec rounds, pydantic truncates), the payload goes through ``decode_telemetry`` and
its verdict and reason stand. So the fast path can only say yes, and only to payloads the
models accept with the same content; ``tests/protocol/test_fast.py`` holds it to that with
generated payloads, valid and broken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Final, Literal, Protocol

import msgspec

from protocol.codec import MAX_PAYLOAD_BYTES, decode_telemetry
from protocol.models import (
    BOOT_EPOCH_END,
    MAX_READINGS_PER_BATCH,
    PRIMARY_VALUE,
    SENSOR_ID_PATTERN,
    SEQ_MAX,
    TIME_END,
    TIME_MIN,
    SensorKind,
    TelemetryBatch,
    kind_values,
)
from protocol.topics import StationTopic

_SENSOR_ID: Final = re.compile(SENSOR_ID_PATTERN)
"""The models' pattern, used with ``fullmatch`` (so ``$`` cannot stop before a newline)."""
_TOO_PRECISE: Final = re.compile(rb":\d\d\.\d{7}")
"""Seconds with more than six fractional digits (or a value that looks like them): the
models' reading of the time is the one that counts. Starts with a literal, so ``re`` scans
for it at ~6 M readings/s."""
_INT64_MAX: Final = min(SEQ_MAX, 2**63 - 1)
"""msgspec bounds an integer within int64."""
_NAMES: Final = {kind: kind_values(kind) for kind in SensorKind}

WireTime = Annotated[datetime, msgspec.Meta(tz=True)]


class FastReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    sensor_id: str
    kind: SensorKind
    ts: WireTime
    values: Annotated[dict[str, float], msgspec.Meta(min_length=1, max_length=32)]


class FastBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    v: Literal[1]
    station_id: str
    boot_epoch: Annotated[int, msgspec.Meta(ge=0, lt=BOOT_EPOCH_END)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]  # larger ones: the models decide
    sent_at: WireTime
    readings: Annotated[
        list[FastReading], msgspec.Meta(min_length=1, max_length=MAX_READINGS_PER_BATCH)
    ]


class ReadingView(Protocol):
    """What ingest, its sinks and the rules read of a reading: ``Reading`` or ``FastReading``."""

    @property
    def sensor_id(self) -> str: ...
    @property
    def kind(self) -> SensorKind: ...
    @property
    def ts(self) -> datetime: ...
    @property
    def values(self) -> dict[str, float]: ...


class BatchView(Protocol):
    """What ingest reads of a batch: ``TelemetryBatch`` or ``FastBatch``."""

    @property
    def station_id(self) -> str: ...
    @property
    def boot_epoch(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def sent_at(self) -> datetime: ...
    @property
    def readings(self) -> Sequence[ReadingView]: ...


KNOWN_IDS_KEPT = 1_000_000


class KnownIds:
    """Sensor ids that passed the pattern, each with the station it passed for, so a fleet's
    ids are matched once, not per reading; past ``kept`` it starts afresh (memory stays
    bounded, the cost is a rematch)."""

    def __init__(self, kept: int = KNOWN_IDS_KEPT) -> None:
        self.kept = kept
        self._ids: dict[str, str] = {}

    def all_valid(self, station_id: str, readings: Sequence[FastReading]) -> bool:
        """Whether every reading's sensor id matches the pattern and is ``<station_id>.…``."""
        known, prefix = self._ids, station_id + "."
        for reading in readings:
            sensor_id = reading.sensor_id
            if known.get(sensor_id) == station_id:
                continue
            if not (
                sensor_id.startswith(prefix)
                and len(sensor_id) > len(prefix)
                and _SENSOR_ID.fullmatch(sensor_id)
            ):
                return False
            if len(known) >= self.kept:
                known.clear()
            known[sensor_id] = station_id
        return True


class TelemetryDecoder:
    """``decode_telemetry`` with a fast path: same results, same refusals (``PayloadError``)."""

    def __init__(self, known: KnownIds | None = None) -> None:
        self._decoder = msgspec.json.Decoder(FastBatch)
        self.known = known or KnownIds()
        self.fast = 0
        """Batches the fast path took."""
        self.slow = 0
        """Payloads left to the models (refused ones included)."""

    def __call__(self, topic: StationTopic, payload: bytes) -> BatchView:
        batch = self._fast(topic, payload)
        if batch is None:
            self.slow += 1
            return decode_telemetry(topic, payload)
        self.fast += 1
        return batch

    def _fast(self, topic: StationTopic, payload: bytes) -> FastBatch | None:
        if len(payload) > MAX_PAYLOAD_BYTES or _TOO_PRECISE.search(payload):
            return None
        try:
            batch = self._decoder.decode(payload)
        except msgspec.DecodeError:
            return None
        station_id = batch.station_id
        if station_id != topic.station_id or not TIME_MIN <= batch.sent_at < TIME_END:
            return None
        if not self.known.all_valid(station_id, batch.readings):
            return None
        names, primary = _NAMES, PRIMARY_VALUE
        for reading in batch.readings:
            values, kind = reading.values, reading.kind
            if not (
                TIME_MIN <= reading.ts < TIME_END
                and primary[kind] in values
                and names[kind].issuperset(values)
            ):
                return None
        return batch


def as_model(batch: BatchView) -> TelemetryBatch:
    """The pydantic model of a decoded batch (for code that needs the model itself)."""
    if isinstance(batch, TelemetryBatch):
        return batch
    return TelemetryBatch.model_validate(msgspec.to_builtins(batch))
