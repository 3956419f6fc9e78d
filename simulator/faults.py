"""Faults a scenario injects between the sensors and the broker.

Resolved from the scenario's ``FaultSpec`` (targets picked, windows in absolute time), a
``FaultPlan`` answers the runner's questions: is this station's link up, how does its device
clock read, does this batch go out twice, which values does a broken sensor report.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from protocol import Reading
from simulator.scenario import FaultKind

CLOCK_RESET_TO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault, in absolute time, with its resolved target."""

    kind: FaultKind
    start: datetime
    end: datetime | None
    station_id: str | None = None
    sensor_id: str | None = None
    count: int = 1
    probability: float = 1.0
    offset_s: float = 0.0
    battery_v: float = 0.0

    def active(self, ts: datetime) -> bool:
        return self.start <= ts and (self.end is None or ts < self.end)


@dataclass
class FaultPlan:
    faults: list[Fault]
    rng: random.Random
    _stuck: dict[str, dict[str, float]] = field(default_factory=dict)

    def _of(self, kind: FaultKind, station_id: str, ts: datetime) -> list[Fault]:
        return [
            f for f in self.faults if f.kind == kind and f.station_id == station_id and f.active(ts)
        ]

    def online(self, station_id: str, ts: datetime) -> bool:
        return not self._of("station_offline", station_id, ts)

    def duplicated(self, station_id: str, ts: datetime) -> bool:
        return any(self.rng.random() < f.probability for f in self._of("duplicate", station_id, ts))

    def broker_dropped(self, station_id: str, ts: datetime) -> bool:
        """The broker takes a batch (PUBACK to the edge) and drops it before ingest has it."""
        return any(
            self.rng.random() < f.probability for f in self._of("broker_drop", station_id, ts)
        )

    def reordered(self, station_id: str, ts: datetime) -> bool:
        return bool(self._of("out_of_order", station_id, ts))

    def garbage_due(self, ts: datetime, tick: timedelta) -> list[Fault]:
        """Garbage faults whose moment falls in [ts, ts + tick)."""
        return [f for f in self.faults if f.kind == "garbage" and ts <= f.start < ts + tick]

    def device_time(self, station_id: str, ts: datetime) -> datetime:
        """What the station's devices stamp on a reading taken at true time ``ts``."""
        for fault in self._of("clock_reset", station_id, ts):
            return CLOCK_RESET_TO + (ts - fault.start)
        skew = sum(f.offset_s for f in self._of("clock_skew", station_id, ts))
        return ts + timedelta(seconds=skew)

    def distort(self, station_id: str, readings: list[Reading], ts: datetime) -> list[Reading]:
        """Apply sensor faults (stuck, low battery) and device clock faults to readings."""
        device_ts = self.device_time(station_id, ts)
        out = []
        for reading in readings:
            values = self._sensor_values(reading, ts)
            if values is not reading.values or device_ts != reading.ts:
                reading = reading.model_copy(update={"values": values, "ts": device_ts})
            out.append(reading)
        return out

    def _sensor_values(self, reading: Reading, ts: datetime) -> dict[str, float]:
        values = reading.values
        for fault in self.faults:
            if fault.sensor_id != reading.sensor_id or not fault.active(ts):
                continue
            if fault.kind == "stuck_sensor":
                values = self._stuck.setdefault(reading.sensor_id, dict(values))
            elif fault.kind == "low_battery" and "battery_v" in values:
                values = {**values, "battery_v": fault.battery_v}
        return values


def garbage_payload(rng: random.Random, index: int) -> bytes:
    """Deterministic junk of the kinds real links produce: noise, cut JSON, wrong shapes."""
    choices = (
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
        lambda: b'{"v":1,"station_id":"',
        lambda: b'{"v": 1, "readings": "none"}',
        lambda: b"",
        lambda: b"\xef\xbb\xbf" + b"null",
    )
    return choices[index % len(choices)]()
