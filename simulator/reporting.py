"""When a device reports: heartbeats, and fast reports while one of its own alarms is raised.

A battery NB-IoT device sleeps between heartbeats (12-24 h for covers, domain brief) and wakes
to report at once when a value crosses its alarm threshold, every ``alarm_interval`` while the
alarm lasts, and once more on recovery. A mains-powered device reports every few seconds.
An *exception-only* device (``alarm_interval=None``; ``policy_for(..., "exception")``) reports
on raise and on recovery and on its heartbeat, but not again while the alarm lasts.

``ReportPolicy`` is the pure rule; ``Reporter`` carries one device's state (last report, alarm
raised or not, the slow baselines its drop alarms compare with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from protocol import SensorKind
from simulator.physics import GAS_ALARM_PPM, WATER_ALARM_M
from simulator.scenario import ReportingMode

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
    alarm_interval: timedelta | None
    """None: report by exception only (raise and recovery), not again while abnormal."""
    alarm: tuple[Threshold, ...] = ()
    baseline_tau: timedelta = PRESSURE_BASELINE_TAU

    def __post_init__(self) -> None:
        interval = self.alarm_interval
        if self.heartbeat <= timedelta(0) or (interval is not None and interval <= timedelta(0)):
            raise ValueError("heartbeat and alarm_interval must be positive")
        limits = tuple(
            (
                t.field,
                math.inf if t.above is None else t.above,
                -math.inf if t.below is None else t.below,
            )
            for t in self.alarm
            if t.drop is None
        )
        object.__setattr__(self, "_limits", limits)
        object.__setattr__(self, "tracks_baseline", any(t.drop is not None for t in self.alarm))

    _limits: tuple[tuple[str, float, float], ...] = field(init=False, repr=False, compare=False)
    tracks_baseline: bool = field(init=False, repr=False, compare=False)
    """Whether a drop alarm makes the device keep a slow baseline (it must sample often)."""

    @property
    def exception_only(self) -> bool:
        return self.alarm_interval is None

    def abnormal(
        self, values: Mapping[str, float], baselines: Mapping[str, float] | None = None
    ) -> bool:
        """Whether any of the device's alarms is raised by ``values``."""
        if self.tracks_baseline:
            baselines = baselines or {}
            return any(t.abnormal(values, baselines.get(t.field)) for t in self.alarm)
        for name, above, below in self._limits:  # the common case, without a baseline: fast
            value = values.get(name)
            if value is not None and (value > above or value < below):
                return True
        return False

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
        state at the previous sample), every ``alarm_interval`` while abnormal (unless it
        reports by exception only), and otherwise every ``heartbeat``.
        """
        abnormal = self.abnormal(values, baselines)
        if last_report_ts is None or abnormal != was_abnormal:
            return True
        interval = self.interval(abnormal)
        return ts - last_report_ts >= interval

    def interval(self, abnormal: bool) -> timedelta:
        """How long after its last report the device reports again in this state."""
        if abnormal and self.alarm_interval is not None:
            return self.alarm_interval
        return self.heartbeat


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, exactly."""
    return (ts - _EPOCH) // _MICROSECOND


@dataclass
class Reporter:
    """One device's reporting state under its policy.

    Times are kept as integer microseconds since the epoch (``offer_us``), so a simulation in
    simulated time need not build a datetime per sample; ``offer`` takes a datetime.
    """

    policy: ReportPolicy
    last_report_us: int | None = None
    abnormal: bool = False
    baselines: dict[str, float] = field(default_factory=dict)
    _last_sample_us: int | None = None

    def __post_init__(self) -> None:
        self._heartbeat_us = self.policy.heartbeat // _MICROSECOND
        self._alarm_us = self.policy.interval(True) // _MICROSECOND
        self._tau_s = self.policy.baseline_tau.total_seconds()

    @property
    def last_report_ts(self) -> datetime | None:
        us = self.last_report_us
        return None if us is None else _EPOCH + timedelta(microseconds=us)

    def next_due_us(self) -> int | None:
        """When the device next reports if nothing changes (None: at its next sample)."""
        if self.last_report_us is None:
            return None
        return self.last_report_us + (self._alarm_us if self.abnormal else self._heartbeat_us)

    def offer(self, ts: datetime, values: Mapping[str, float]) -> bool:
        """Whether the device reports this sample; updates its state either way."""
        return self.offer_us(micros(ts), values)

    def offer_us(self, t_us: int, values: Mapping[str, float]) -> bool:
        """``offer`` at ``t_us`` microseconds since the epoch."""
        policy = self.policy
        abnormal = policy.abnormal(values, self.baselines) if policy.alarm else False
        last = self.last_report_us
        if last is None or abnormal != self.abnormal:
            due = True
        else:
            due = t_us - last >= (self._alarm_us if abnormal else self._heartbeat_us)
        self.abnormal = abnormal
        if not abnormal and policy.tracks_baseline:
            self._follow_baselines(t_us, values)
        self._last_sample_us = t_us
        if due:
            self.last_report_us = t_us
        return due

    def _follow_baselines(self, t_us: int, values: Mapping[str, float]) -> None:
        """Move each drop alarm's baseline towards the value; frozen while an alarm is raised."""
        last = self._last_sample_us
        elapsed = (t_us - last) / 1e6 if last is not None else 0.0
        weight = 1.0 - math.exp(-elapsed / self._tau_s)
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


def policy_for(
    kind: SensorKind,
    powered: bool,
    mode: ReportingMode = "periodic",
    *,
    day_speed: float = 1.0,
) -> ReportPolicy:
    """The policy of a device of ``kind`` in ``mode``: ``periodic`` is ``default_policy``;
    ``exception`` reports on raise and recovery (and the heartbeat) only. On a day compressed
    ``day_speed`` times, a drop alarm's baseline follows the faster daily cycle as fast."""
    policy = default_policy(kind, powered)
    interval = None if mode == "exception" else policy.alarm_interval
    return ReportPolicy(
        heartbeat=policy.heartbeat,
        alarm_interval=interval,
        alarm=policy.alarm,
        baseline_tau=policy.baseline_tau / day_speed,
    )


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
