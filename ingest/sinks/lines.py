"""InfluxDB line protocol for telemetry: one point per reading, one per batch.

Schema (VictoriaMetrics names a series ``<measurement>_<field>``)::

    <kind>,station=<station_id>,sensor=<sensor_id> <value name>=<float>,... <device ts, ns>
    citysense_batch,station=<station_id> readings=<n>,seq=<n>,sent_at=<unix s>,
        received_at=<unix s>,transit_s=<s>,age_s=<s> <edge send time, ns>

Tags are the station and the sensor only (a boot epoch or a batch number as a tag would start
new series on every reboot or batch). The edge and ingest times of a batch go in its
``citysense_batch`` point, so per-reading series carry exactly the values the device measured.
That point is stamped with the batch's send time, which a re-sent batch keeps: a store that
de-duplicates equal timestamps keeps one point per batch however often it was delivered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from protocol import BatchView, SensorKind

BATCH_MEASUREMENT: Final = "citysense_batch"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Line protocol escapes; the protocol's id patterns already exclude these characters, so this
# is a guard for ids from elsewhere, not a path that valid traffic takes.
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def unix_ns(ts: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime (microsecond precision)."""
    return (ts - _EPOCH) // _US * 1000


def tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


TEMPLATES_KEPT = 100_000
"""Line heads a ``LineFormatter`` keeps (one per sensor, ~100 B each); past that it starts
afresh, so a fleet larger than this costs a rebuild, never unbounded memory."""
_FIELDS = bytes.maketrans(b":", b"=")
"""JSON values to line-protocol fields: colons become ``=`` and ``{}"[]`` go. Exact, because value
names match ``[a-z][a-z0-9_]*`` and JSON numbers hold none of these characters."""


class LineFormatter:
    """One line per reading: measurement = sensor kind, tags = station and sensor, fields = the
    values, time = the device's timestamp (ns).

    The head (measurement and tags) is built once per sensor; the fields are the values as
    msgspec writes them in JSON (the shortest repr that reads back to the same float, in C:
    about a quarter of the cost of ``repr`` per value), turned into ``name=value`` pairs."""

    def __init__(self, kept: int = TEMPLATES_KEPT) -> None:
        self.kept = kept
        self._templates: dict[str, tuple[SensorKind, str, str]] = {}
        self._encode = msgspec.json.Encoder().encode

    def reading_lines(self, batch: BatchView) -> list[str]:
        heads, station_id, readings = self._templates, batch.station_id, batch.readings
        if len(readings) == 1:  # one reading a message: no list to encode, nothing to split
            fields = [self._encode(readings[0].values).translate(_FIELDS, b'{}"').decode()]
        else:
            # every reading's values in one call: [{"a":1.0},{"b":2.0}] → "a=1.0\nb=2.0"
            values = self._encode([reading.values for reading in readings])
            fields = values.replace(b"},{", b"\n").translate(_FIELDS, b'{}"[]').decode().split("\n")
        lines = []
        for reading, field_set in zip(readings, fields, strict=True):
            kind = reading.kind
            cached = heads.get(reading.sensor_id)
            if cached is None or cached[0] is not kind or cached[1] != station_id:
                if len(heads) >= self.kept:
                    heads.clear()
                head = f"{kind.value},station={tag(station_id)},sensor={tag(reading.sensor_id)} "
                cached = heads[reading.sensor_id] = (kind, station_id, head)
            lines.append(f"{cached[2]}{field_set} {(reading.ts - _EPOCH) // _US * 1000}")
        return lines


def batch_line(batch: BatchView, received_at: datetime) -> str:
    """The batch's own point: its edge and ingest times, stamped with the edge send time.

    ``transit_s`` (receive − send) below zero means the edge clock is ahead of ingest's;
    ``age_s`` (receive − oldest device timestamp) shows how stale a backlog is.
    """
    readings = batch.readings
    oldest = readings[0].ts if len(readings) == 1 else min(reading.ts for reading in readings)
    # whole microseconds, then integer arithmetic: the same floats as dividing the timedeltas
    # (both are the correctly rounded quotient), for 3 datetime subtractions instead of 5
    sent_us = (batch.sent_at - _EPOCH) // _US
    received_us = (received_at - _EPOCH) // _US
    oldest_us = (oldest - _EPOCH) // _US
    # one f-string, no dict of fields: with one reading a message this line cost more than the
    # message's decoding and its reading's line together
    return (
        f"{BATCH_MEASUREMENT},station={tag(batch.station_id)} "
        f"readings={float(len(readings))!r},seq={float(batch.seq)!r},"
        f"sent_at={sent_us / 1_000_000!r},received_at={received_us / 1_000_000!r},"
        f"transit_s={(received_us - sent_us) / 1_000_000!r},"
        f"age_s={(received_us - oldest_us) / 1_000_000!r} {sent_us * 1000}"
    )
