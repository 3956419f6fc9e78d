"""When a device reports: heartbeats, and fast reports while one of its own alarms is raised.

A battery NB-IoT device sleeps between heartbeats (12-24 h for covers, domain brief) and wakes
to report at once when a value crosses its alarm threshold, every ``alarm_interval`` while the
alarm lasts, and once more on recovery. A mains-powered device reports every few seconds.

``ReportPolicy`` is the pure rule; ``Reporter`` carries one device's state (last report, alarm
raised or not, the slow baselines its drop alarms compare with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol import SensorKind
from simulator.physics import GAS_ALARM_PPM, WATER_ALARM_M

COVER_TILT_ALARM_DEG = 10.0
"""Vendor default alarm angle of a smart cover (GB/T 41401 devices; domain brief)."""
POLE_TILT_ALARM_DEG = 1.0
"""Pole tilt warning (domain brief: warn at 1-2°)."""
POLE_VIBRATION_ALARM_G = 0.5
"""Well above wind and traffic knocks (< 0.3 g), well below a fall (several g). Estimate."""
NETWORK_END_MIN_MPA = 0.14
"""Network-end pressure must be at least 0.14 MPa (CJ/T 316)."""
PRESSURE_DROP_ALARM_MPA = 0.03
"""A burst drops pressure ≥ 0.02-0.05 MPa below the local baseline within seconds (domain)."""
PRESSURE_BASELINE_TAU = timedelta(minutes=15)
"""The device's baseline follows the daily demand cycle but not a burst."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """One alarm of a device on one value: above a limit, below one, or a drop from baseline."""

    field: str
    above: float | None = None
    below: float | None = None
    drop: float | None = None
    """Alarm when the value is this far below the slow baseline the device keeps."""

    def abnormal(self, values: Mapping[str, float], baseline: float | None = None) -> bool:
        value = values.get(self.field)
        if value is None:
            return False
        return (
            (self.above is not None and value > self.above)
            or (self.below is not None and value < self.below)
            or (self.drop is not None and baseline is not None and baseline - value > self.drop)
        )


@dataclass(frozen=True, slots=True)
class ReportPolicy:
    """How often a device reports, normally and while one of its alarms is raised."""

    heartbeat: timedelta
    alarm_interval: timedelta
    alarm: tuple[Threshold, ...] = ()
    baseline_tau: timedelta = PRESSURE_BASELINE_TAU

    def __post_init__(self) -> None:
        if self.heartbeat <= timedelta(0) or self.alarm_interval <= timedelta(0):
            raise ValueError("heartbeat and alarm_interval must be positive")

    def abnormal(
        self, values: Mapping[str, float], baselines: Mapping[str, float] | None = None
    ) -> bool:
        """Whether any of the device's alarms is raised by ``values``."""
        baselines = baselines or {}
        return any(t.abnormal(values, baselines.get(t.field)) for t in self.alarm)

    def due(
        self,
        last_report_ts: datetime | None,
        ts: datetime,
        values: Mapping[str, float],
        *,
        was_abnormal: bool = False,
        baselines: Mapping[str, float] | None = None,
    ) -> bool:
        """Whether the device reports ``values`` sampled at ``ts``.

        It does on its first sample, when an alarm is raised or clears (``was_abnormal`` is the
        state at the previous sample), every ``alarm_interval`` while abnormal, and otherwise
        every ``heartbeat``.
        """
        abnormal = self.abnormal(values, baselines)
        if last_report_ts is None or abnormal != was_abnormal:
            return True
        interval = self.alarm_interval if abnormal else self.heartbeat
        return ts - last_report_ts >= interval


@dataclass
class Reporter:
    """One device's reporting state under its policy."""

    policy: ReportPolicy
    last_report_ts: datetime | None = None
    abnormal: bool = False
    baselines: dict[str, float] = field(default_factory=dict)
    _last_sample_ts: datetime | None = None

    def offer(self, ts: datetime, values: Mapping[str, float]) -> bool:
        """Whether the device reports this sample; updates its state either way."""
        policy = self.policy
        due = policy.due(
            self.last_report_ts, ts, values, was_abnormal=self.abnormal, baselines=self.baselines
        )
        self.abnormal = policy.abnormal(values, self.baselines)
        if not self.abnormal:
            self._follow_baselines(ts, values)
        self._last_sample_ts = ts
        if due:
            self.last_report_ts = ts
        return due

    def _follow_baselines(self, ts: datetime, values: Mapping[str, float]) -> None:
        """Move each drop alarm's baseline towards the value; frozen while an alarm is raised."""
        elapsed = (ts - self._last_sample_ts).total_seconds() if self._last_sample_ts else 0.0
        weight = 1.0 - math.exp(-elapsed / self.policy.baseline_tau.total_seconds())
        for threshold in self.policy.alarm:
            value = values.get(threshold.field)
            if threshold.drop is None or value is None:
                continue
            old = self.baselines.get(threshold.field)
            self.baselines[threshold.field] = value if old is None else old + weight * (value - old)


BATTERY_HEARTBEAT = timedelta(hours=12)
PRESSURE_LOGGER_HEARTBEAT = timedelta(minutes=15)
"""Utilities read pressure loggers every 15 minutes (domain brief)."""
POWERED_HEARTBEAT = timedelta(seconds=5)

ALARMS: dict[SensorKind, tuple[Threshold, ...]] = {
    SensorKind.COVER: (
        Threshold("tilt_deg", above=COVER_TILT_ALARM_DEG),
        Threshold("water_level_m", above=WATER_ALARM_M),
        Threshold("gas_ppm", above=GAS_ALARM_PPM),
    ),
    SensorKind.PRESSURE: (
        Threshold("pressure_mpa", below=NETWORK_END_MIN_MPA, drop=PRESSURE_DROP_ALARM_MPA),
    ),
    SensorKind.POLE: (
        Threshold("tilt_deg", above=POLE_TILT_ALARM_DEG),
        Threshold("vibration_g", above=POLE_VIBRATION_ALARM_G),
    ),
}


def default_policy(kind: SensorKind, powered: bool) -> ReportPolicy:
    """The usual policy of a device of ``kind``.

    Battery: covers and poles heartbeat every 12 h, pressure loggers every 15 min; alarms are
    reported every second (pressure every 5 s, the sampling that makes burst detection work).
    Powered: every 5 s, every second while an alarm is raised.
    """
    if powered:
        heartbeat = POWERED_HEARTBEAT
    elif kind is SensorKind.PRESSURE:
        heartbeat = PRESSURE_LOGGER_HEARTBEAT
    else:
        heartbeat = BATTERY_HEARTBEAT
    slow_alarm = kind is SensorKind.PRESSURE and not powered
    interval = timedelta(seconds=5 if slow_alarm else 1)
    return ReportPolicy(heartbeat=heartbeat, alarm_interval=interval, alarm=ALARMS[kind])
