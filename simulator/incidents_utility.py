"""Incidents on the water network and on poles: bursts, falls and slow creep."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from protocol import SensorInfo, SensorKind
from simulator.city import City
from simulator.incident_base import ExpectedCase, OneSensor, Window

BURST_ATTENUATION_M = 800.0
"""A neighbour ``d`` metres from a burst sees ``exp(-d / 800 m)`` of its drop (estimate)."""
BURST_RAMP_S = 10.0
"""A burst drops the pressure within seconds (domain brief)."""
POLE_FALL_S = 2.0
"""A falling pole reaches its final angle within about two seconds."""


@dataclass(frozen=True, slots=True)
class PressureBurst(Window):
    """A water main bursts at ``sensor_id``: pressure drops by ``drop_mpa`` within seconds and
    stays down; each neighbour ``(sensor_id, factor)`` sees ``factor`` (0..1] of the drop."""

    kind: ClassVar[str] = "pressure_burst"
    severity: ClassVar[str] = "urgent"
    sensor_kind: ClassVar[SensorKind] = SensorKind.PRESSURE
    sensor_id: str
    start: datetime
    duration: timedelta
    drop_mpa: float = 0.08
    neighbours: tuple[tuple[str, float], ...] = ()
    _factors: dict[str, float] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        self._check_window()
        if not 0.0 < self.drop_mpa <= 1.0:
            raise ValueError(f"a burst drops pressure by (0, 1] MPa, not {self.drop_mpa}")
        factors = {self.sensor_id: 1.0}
        for neighbour, factor in self.neighbours:
            if not 0.0 < factor <= 1.0 or neighbour in factors:
                raise ValueError(f"bad neighbour {neighbour!r} with factor {factor}")
            factors[neighbour] = factor
        object.__setattr__(self, "_factors", factors)

    @classmethod
    def near(
        cls,
        city: City,
        sensor_id: str,
        start: datetime,
        duration: timedelta,
        drop_mpa: float = 0.08,
        radius_m: float = 1_500.0,
    ) -> PressureBurst:
        """A burst at ``sensor_id`` seen by the city's pressure sensors within ``radius_m``,
        attenuated with distance."""
        nearby = city.neighbours(sensor_id, radius_m, SensorKind.PRESSURE)
        neighbours = tuple((s.sensor_id, math.exp(-d / BURST_ATTENUATION_M)) for s, d in nearby)
        return cls(sensor_id, start, duration, drop_mpa, neighbours)

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        return tuple(self._factors)

    def applies_to(self, sensor_id: str) -> bool:
        return sensor_id in self._factors

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        ramp = min(1.0, max(0.0, self.elapsed_s(ts)) / BURST_RAMP_S)
        drop = self.drop_mpa * self._factors.get(sensor_id, 0.0) * ramp
        return {**values, "pressure_mpa": max(0.0, values.get("pressure_mpa", 0.0) - drop)}

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("event", "0402")


@dataclass(frozen=True, slots=True)
class PoleFall(OneSensor):
    """A pole knocked over: tilt swings to ``angle_deg`` within two seconds, with a vibration
    spike of ``vibration_g`` at the impact that dies away over a few seconds."""

    kind: ClassVar[str] = "pole_fall"
    severity: ClassVar[str] = "critical"
    sensor_kind: ClassVar[SensorKind] = SensorKind.POLE
    sensor_id: str
    start: datetime
    duration: timedelta
    angle_deg: float = 35.0
    vibration_g: float = 3.0

    def __post_init__(self) -> None:
        self._check_window()
        if not 5.0 <= self.angle_deg <= 90.0:
            raise ValueError(f"a fallen pole leans 5..90 degrees, not {self.angle_deg}")
        if self.vibration_g <= 0.0:
            raise ValueError(f"vibration spike must be positive, not {self.vibration_g}")

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        elapsed = max(0.0, self.elapsed_s(ts))
        tilt = values.get("tilt_deg", 0.0)
        fallen = tilt + (self.angle_deg - tilt) * min(1.0, elapsed / POLE_FALL_S)
        spike = self.vibration_g * math.exp(-elapsed / POLE_FALL_S)
        return {
            **values,
            "tilt_deg": fallen + 0.2 * math.sin(2.1 * elapsed),
            "vibration_g": max(values.get("vibration_g", 0.0), spike),
        }

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("component", sensor.class_code)


@dataclass(frozen=True, slots=True)
class PoleCreep(OneSensor):
    """A pole leaning slowly (foundation settling): maintenance work on the pole's class, not
    an emergency."""

    kind: ClassVar[str] = "pole_creep"
    severity: ClassVar[str] = "maintenance"
    sensor_kind: ClassVar[SensorKind] = SensorKind.POLE
    sensor_id: str
    start: datetime
    duration: timedelta
    rate_deg_per_day: float = 0.5

    def __post_init__(self) -> None:
        self._check_window()
        if not 0.0 < self.rate_deg_per_day <= 10.0:
            raise ValueError(f"creep rate must be in (0, 10] °/day, not {self.rate_deg_per_day}")

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        extra = self.rate_deg_per_day * max(0.0, self.elapsed_s(ts)) / 86_400.0
        return {**values, "tilt_deg": values.get("tilt_deg", 0.0) + extra}

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("component", sensor.class_code)
