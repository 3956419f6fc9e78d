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

from protocol import TelemetryBatch

BATCH_MEASUREMENT: Final = "citysense_batch"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Line protocol escapes; the protocol's id patterns already exclude these characters, so this
# is a guard for ids from elsewhere, not a path that valid traffic takes.
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def unix_ns(ts: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime (microsecond precision)."""
    return (ts - _EPOCH) // _US * 1000


def unix_s(ts: datetime) -> float:
    return (ts - _EPOCH) / timedelta(seconds=1)


def tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


TEMPLATES_KEPT = 100_000
"""Line templates a ``LineFormatter`` keeps (one per sensor and value-name set, ~200 B each);
past that it starts afresh, so a fleet larger than this costs a rebuild, never unbounded memory."""


class LineFormatter:
    """One line per reading: measurement = sensor kind, tags = station and sensor, fields = the
    values, time = the device's timestamp. Each sensor's line is built once as a ``str.format``
    template (measurement, tags, value names), so a reading costs one ``format`` call."""

    def __init__(self, kept: int = TEMPLATES_KEPT) -> None:
        self.kept = kept
        self._templates: dict[tuple[str, ...], str] = {}

    def reading_lines(self, batch: TelemetryBatch) -> list[str]:
        templates = self._templates
        lines = []
        for reading in batch.readings:
            values = reading.values
            key = (batch.station_id, reading.sensor_id, reading.kind.value, *values)
            template = templates.get(key)
            if template is None:
                if len(templates) >= self.kept:
                    templates.clear()
                template = templates[key] = _template(batch.station_id, reading.sensor_id, key)
            lines.append(template.format(*values.values(), (reading.ts - _EPOCH) // _US * 1000))
        return lines


def _template(station_id: str, sensor_id: str, key: tuple[str, ...]) -> str:
    kind, names = key[2], key[3:]
    fields = ",".join(f"{name}={{!r}}" for name in names)
    head = f"{kind},station={tag(station_id)},sensor={tag(sensor_id)}"
    return head.replace("{", "{{").replace("}", "}}") + f" {fields} {{}}"


def batch_line(batch: TelemetryBatch, received_at: datetime) -> str:
    """The batch's own point: its edge and ingest times, stamped with the edge send time.

    ``transit_s`` (receive − send) below zero means the edge clock is ahead of ingest's;
    ``age_s`` (receive − oldest device timestamp) shows how stale a backlog is.
    """
    oldest = min(reading.ts for reading in batch.readings)
    fields = {
        "readings": float(len(batch.readings)),
        "seq": float(batch.seq),
        "sent_at": unix_s(batch.sent_at),
        "received_at": unix_s(received_at),
        "transit_s": (received_at - batch.sent_at) / timedelta(seconds=1),
        "age_s": (received_at - oldest) / timedelta(seconds=1),
    }
    return (
        f"{BATCH_MEASUREMENT},station={tag(batch.station_id)} "
        + ",".join(f"{name}={value!r}" for name, value in fields.items())
        + f" {unix_ns(batch.sent_at)}"
    )
