"""Sensor physics: what each kind of sensor reads when nothing is wrong.

A model is deterministic given ``(seed, sensor_id)`` and the sequence of sample times it is
asked for. Slow effects (daily cycles, wind) are functions of time; measurement noise comes
from the model's own ``random.Random``; and events that happen in time (a vehicle rocking a
cover) are scheduled on a separate stream, so they do not depend on how often you sample.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

from protocol import SensorInfo, SensorKind

BEIJING = timezone(timedelta(hours=8))
DAY_S = 86_400.0


class SensorModel(Protocol):
    def sample(self, ts: datetime) -> dict[str, float]:
        """The values the sensor reads at ``ts`` (timezone-aware); every value is finite."""
        ...


def model_for(sensor: SensorInfo, seed: int) -> SensorModel:
    """The physics model for one installed sensor."""
    models: dict[SensorKind, type[CoverModel | PressureModel | PoleModel]] = {
        SensorKind.COVER: CoverModel,
        SensorKind.PRESSURE: PressureModel,
        SensorKind.POLE: PoleModel,
    }
    return models[sensor.kind](seed, sensor.sensor_id)


def aware_utc(ts: datetime) -> datetime:
    """``ts`` in UTC; refuses naive timestamps, which cannot be placed in event time."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive timestamp {ts.isoformat()}: use timezone-aware UTC")
    return ts.astimezone(UTC)


def epoch_seconds(ts: datetime) -> float:
    return aware_utc(ts).timestamp()


def beijing_hour(ts: datetime) -> float:
    """Local hour of day (0-24) in Beijing time, UTC+8."""
    local = aware_utc(ts).astimezone(BEIJING)
    return local.hour + local.minute / 60 + local.second / 3600


def _stream(seed: int, sensor_id: str, purpose: str) -> random.Random:
    return random.Random(f"{seed}/{sensor_id}/{purpose}")


def _daily(t: float, phase: float) -> float:
    """A 24 h sine in [-1, 1]."""
    return math.sin(2 * math.pi * t / DAY_S + phase)


@dataclass(frozen=True, slots=True)
class Rocking:
    """A vehicle driving over a loose cover: a brief tilt spike."""

    start: float
    end: float
    peak_deg: float


class CoverModel:
    """A smart manhole cover: tilt, water level in the well, battery."""

    TILT_NOISE_DEG = 0.3
    ROCKING_MAX_S = 1.5
    """Longest rocking spike. Vendors debounce > 15° held for 2 s, so a spike stays shorter."""
    ROCKING_MIN_GAP_S = 2.0
    """Quiet time between two rocking spikes, so two spikes never merge into one long one."""

    def __init__(self, seed: int, sensor_id: str) -> None:
        setup = _stream(seed, sensor_id, "setup")
        self.mean_rocking_gap_s = setup.uniform(120.0, 900.0)
        self.water_level_m = setup.uniform(0.3, 1.0)
        self.battery_v = setup.uniform(3.55, 3.65)
        self._phase = setup.uniform(0.0, 2 * math.pi)
        self._noise = _stream(seed, sensor_id, "noise")
        self._traffic = _stream(seed, sensor_id, "traffic")
        self._rocking: Rocking | None = None

    def sample(self, ts: datetime) -> dict[str, float]:
        t = epoch_seconds(ts)
        noise = self._noise
        tilt = abs(noise.gauss(0.0, self.TILT_NOISE_DEG))
        rocking = self._rocking_at(t)
        if rocking is not None:
            tilt = rocking.peak_deg + noise.gauss(0.0, 0.5)
        return {
            "tilt_deg": abs(tilt),
            "water_level_m": max(
                0.0, self.water_level_m + 0.05 * _daily(t, self._phase) + noise.gauss(0, 0.005)
            ),
            "battery_v": self.battery_v + 0.02 * _daily(t, self._phase) + noise.gauss(0, 0.003),
        }

    def _rocking_at(self, t: float) -> Rocking | None:
        """The rocking spike going on at ``t``, advancing the vehicle schedule to ``t``."""
        if self._rocking is None:
            self._rocking = self._next_rocking(after=t)
        while t >= self._rocking.end:
            self._rocking = self._next_rocking(after=self._rocking.end)
        return self._rocking if t >= self._rocking.start else None

    def _next_rocking(self, after: float) -> Rocking:
        traffic = self._traffic
        start = after + self.ROCKING_MIN_GAP_S + traffic.expovariate(1 / self.mean_rocking_gap_s)
        duration = traffic.uniform(0.3, self.ROCKING_MAX_S)
        return Rocking(start, start + duration, traffic.uniform(10.0, 30.0))


class PressureModel:
    """Water-main pressure: a baseline lowered by demand at the morning and evening peaks."""

    MORNING_PEAK_H = (8.0, 0.8)
    """Centre and width (hours, Beijing time) of the 07-09 demand peak."""
    EVENING_PEAK_H = (19.5, 1.1)
    """Centre and width of the 18-21 demand peak."""

    def __init__(self, seed: int, sensor_id: str) -> None:
        setup = _stream(seed, sensor_id, "setup")
        self.baseline_mpa = setup.uniform(0.25, 0.40)
        self.peak_drop_mpa = setup.uniform(0.03, 0.06)
        self.battery_v = setup.uniform(3.55, 3.65)
        self._noise = _stream(seed, sensor_id, "noise")

    def demand(self, ts: datetime) -> float:
        """Relative demand in [0, 1]: 1 at the heart of a peak, near 0 at night."""
        hour = beijing_hour(ts)
        return max(_bump(hour, *self.MORNING_PEAK_H), _bump(hour, *self.EVENING_PEAK_H))

    def sample(self, ts: datetime) -> dict[str, float]:
        pressure = self.baseline_mpa - self.peak_drop_mpa * self.demand(ts)
        return {
            "pressure_mpa": pressure + self._noise.gauss(0.0, 0.002),
            "battery_v": self.battery_v + self._noise.gauss(0.0, 0.003),
        }


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


class PoleModel:
    """A utility pole or street lamp: a small installed lean plus sway in the wind."""

    def __init__(self, seed: int, sensor_id: str) -> None:
        setup = _stream(seed, sensor_id, "setup")
        self.lean_deg = setup.uniform(0.2, 0.5)
        self.sway_deg = setup.uniform(0.05, 0.15)
        self.natural_hz = setup.uniform(0.3, 1.2)
        self._gust_periods_s = (setup.uniform(1200, 3600), setup.uniform(300, 900))
        self._phases = tuple(setup.uniform(0.0, 2 * math.pi) for _ in range(3))
        self._noise = _stream(seed, sensor_id, "noise")

    def wind(self, t: float) -> float:
        """Wind strength in [0, 1], varying over minutes to an hour."""
        slow, fast = self._gust_periods_s
        return (
            0.5
            + 0.25 * math.sin(2 * math.pi * t / slow + self._phases[0])
            + 0.25 * math.sin(2 * math.pi * t / fast + self._phases[1])
        )

    def sample(self, ts: datetime) -> dict[str, float]:
        t = epoch_seconds(ts)
        wind = self.wind(t)
        sway = self.sway_deg * wind * math.sin(2 * math.pi * self.natural_hz * t + self._phases[2])
        tilt = self.lean_deg + sway + self._noise.gauss(0.0, 0.02)
        return {
            "tilt_deg": abs(tilt),
            "vibration_g": abs(self._noise.gauss(0.0, 0.005 + 0.02 * wind)),
        }
