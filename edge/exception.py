"""Per-sensor report-by-exception with a heartbeat, as a wrapper around any sensor driver.

A reading goes up the link when it says something new: a value moved by more than its
deadband since the sensor's last *forwarded* reading (so a slow drift is forwarded once it has
added up), a value appeared or disappeared, the sensor is in alarm or has just left it, or the
heartbeat interval has passed since the last forwarded reading. Anything else is suppressed
and counted. A sensor's first reading always goes.

Alarm readings always pass, so the center's rules see every sample of a debounce hold. The
filter's alarm limits are deliberately at or below the center's rule onsets (the vendor alarm
angle of a cover, the pole warning angle, the network minimum pressure): they decide only what
is too important to suppress, never what is an incident.

The heartbeat runs on the gateway's monotonic clock, not on the device's timestamps: a device
clock that resets to 2000-01-01 or jumps must not stop (or flood) a sensor's heartbeat. It
refreshes a sensor the center has heard from; it cannot invent readings for a silent sensor
(the center's ``no_data`` rules catch those).

``ExceptionFilter`` is the pure core (``offer(reading, now)`` with ``now`` passed in);
``ReportByException`` is the driver wrapper the agent reads.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.driver import SensorDriver
from protocol import KIND_VALUES, Reading, SensorInfo, SensorKind

ForwardReason = Literal["first", "change", "alarm", "recovery", "heartbeat"]


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """How one kind of sensor reports by exception (the merged result of defaults and config)."""

    heartbeat_s: float
    deadband: Mapping[str, float] = field(default_factory=dict)
    """A value must move by more than this to be forwarded; a name left out: any change."""
    alarm_above: Mapping[str, float] = field(default_factory=dict)
    alarm_below: Mapping[str, float] = field(default_factory=dict)

    def in_alarm(self, values: Mapping[str, float]) -> bool:
        above = self.alarm_above.items()
        below = self.alarm_below.items()
        return any(values.get(name, -math.inf) > limit for name, limit in above) or any(
            values.get(name, math.inf) < limit for name, limit in below
        )

    def changed(self, last: Mapping[str, float], values: Mapping[str, float]) -> bool:
        if last.keys() != values.keys():
            return True
        return any(abs(values[name] - last[name]) > self.deadband.get(name, 0.0) for name in values)


DEFAULT_POLICIES: Final[Mapping[SensorKind, KindPolicy]] = {
    # Covers: the vendor alarm angle (GB/T 41401 devices, 10°) and the rules' clear levels for
    # water (1.3 m, the rain ceiling) and gas (1,000 ppm); covers move little when seated.
    SensorKind.COVER: KindPolicy(
        heartbeat_s=300.0,
        deadband={
            "tilt_deg": 1.0,
            "water_level_m": 0.05,
            "gas_ppm": 50.0,
            "battery_v": 0.05,
            "signal_dbm": 6.0,
        },
        alarm_above={"tilt_deg": 10.0, "water_level_m": 1.3, "gas_ppm": 1000.0},
    ),
    # Water mains: a burst drops >= 0.02-0.05 MPa, well past a 0.005 MPa deadband; below the
    # network minimum of 0.14 MPa (CJ/T 316) every sample goes.
    SensorKind.PRESSURE: KindPolicy(
        heartbeat_s=60.0,
        deadband={"pressure_mpa": 0.005, "battery_v": 0.05, "signal_dbm": 6.0},
        alarm_below={"pressure_mpa": 0.14},
    ),
    # Poles: the heartbeat stays under the pole rules' 60 s ``stale_after``, so a clear hold
    # after recovery still sees fresh reports; past the 1° warning angle every sample goes.
    SensorKind.POLE: KindPolicy(
        heartbeat_s=30.0,
        deadband={"tilt_deg": 0.1, "vibration_g": 0.1},
        alarm_above={"tilt_deg": 1.0, "vibration_g": 0.5},
    ),
}
"""Defaults per kind; estimates from the domain brief and ``rules/default_rules.yaml``."""


class KindOverride(BaseModel):
    """Configured changes to one kind's defaults; each value name replaces only its own entry.

    Set an alarm limit to ``inf`` (``alarm_above``) or ``-inf`` (``alarm_below``) to switch it off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat_s: float | None = Field(default=None, gt=0)
    deadband: dict[str, float] = Field(default_factory=dict)
    alarm_above: dict[str, float] = Field(default_factory=dict)
    alarm_below: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_negative_deadband(self) -> Self:
        negative = sorted(name for name, band in self.deadband.items() if not band >= 0)
        if negative:
            raise ValueError(f"deadband of {', '.join(negative)} must be >= 0")
        return self


class ReportSettings(BaseModel):
    """The ``report`` section of the edge settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Off: every reading the driver returns is forwarded."""
    kinds: dict[SensorKind, KindOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_of_the_kind(self) -> Self:
        for kind, override in self.kinds.items():
            named = {*override.deadband, *override.alarm_above, *override.alarm_below}
            unknown = sorted(named - KIND_VALUES[kind].keys())
            if unknown:
                raise ValueError(f"a {kind.value} reading has no value {', '.join(unknown)}")
        return self

    def policy(self, kind: SensorKind) -> KindPolicy:
        """The kind's defaults with the configured overrides applied."""
        base = DEFAULT_POLICIES[kind]
        override = self.kinds.get(kind)
        if override is None:
            return base
        return KindPolicy(
            heartbeat_s=base.heartbeat_s if override.heartbeat_s is None else override.heartbeat_s,
            deadband={**base.deadband, **override.deadband},
            alarm_above={**base.alarm_above, **override.alarm_above},
            alarm_below={**base.alarm_below, **override.alarm_below},
        )


@dataclass(slots=True)
class _Last:
    values: dict[str, float]
    forwarded_at: float
    in_alarm: bool


@dataclass(slots=True)
class ExceptionStats:
    forwarded: Counter[ForwardReason] = field(default_factory=Counter)
    suppressed: int = 0


class ExceptionFilter:
    """Decides, sensor by sensor, which readings are forwarded. Pure: ``now`` is passed in."""

    def __init__(self, settings: ReportSettings | None = None) -> None:
        self._last: dict[str, _Last] = {}
        self.stats = ExceptionStats()
        self.reconfigure(settings or ReportSettings())

    def reconfigure(self, settings: ReportSettings) -> None:
        """New deadbands and heartbeats from now on; each sensor's last report is kept."""
        self.settings = settings
        self._policies = {kind: settings.policy(kind) for kind in SensorKind}

    def offer(self, reading: Reading, now: float) -> ForwardReason | None:
        """Why ``reading`` is forwarded at monotonic time ``now`` (seconds), or None."""
        policy = self._policies[reading.kind]
        values = reading.values
        alarm = policy.in_alarm(values)
        last = self._last.get(reading.sensor_id)
        reason: ForwardReason | None
        if last is None:
            reason = "first"
        elif alarm:
            reason = "alarm"
        elif last.in_alarm:
            reason = "recovery"
        elif policy.changed(last.values, values):
            reason = "change"
        elif now - last.forwarded_at >= policy.heartbeat_s:
            reason = "heartbeat"
        else:
            reason = None
        if reason is None:
            self.stats.suppressed += 1
            return None
        self._last[reading.sensor_id] = _Last(dict(values), now, alarm)
        self.stats.forwarded[reason] += 1
        return reason


class ReportByException:
    """A ``SensorDriver`` that forwards only what ``ExceptionFilter`` lets through."""

    def __init__(
        self,
        inner: SensorDriver,
        settings: ReportSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.filter = ExceptionFilter(settings)
        self._clock = clock

    @property
    def stats(self) -> ExceptionStats:
        return self.filter.stats

    def sensors(self) -> Sequence[SensorInfo]:
        return self.inner.sensors()

    def read(self, ts: datetime) -> list[Reading]:
        if not self.filter.settings.enabled:
            return self.inner.read(ts)
        now = self._clock()
        return [r for r in self.inner.read(ts) if self.filter.offer(r, now) is not None]
