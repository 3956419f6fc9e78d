"""Incidents at manhole covers: a cover opened, a flooded street, gas building up in a well."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from protocol import SensorInfo, SensorKind
from simulator.city import City
from simulator.incident_base import ExpectedCase, OneSensor, Window
from simulator.physics import GAS_COVER_CLASSES, epoch_seconds

FLOOD_RISE = timedelta(minutes=5)
"""How long a flood takes to fill a well to its peak level."""
GAS_BUILD_UP = timedelta(minutes=2)
"""Time constant of gas building up in a closed well."""


@dataclass(frozen=True, slots=True)
class CoverOpen(OneSensor):
    """A manhole cover lifted, displaced or missing: its tilt reads about ``angle_deg``."""

    kind: ClassVar[str] = "cover_open"
    severity: ClassVar[str] = "urgent"
    sensor_kind: ClassVar[SensorKind] = SensorKind.COVER
    sensor_id: str
    start: datetime
    duration: timedelta
    angle_deg: float = 75.0

    def __post_init__(self) -> None:
        self._check_window()
        if not 0.0 < self.angle_deg <= 180.0:
            raise ValueError(f"cover angle must be in (0, 180] degrees, not {self.angle_deg}")

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        wobble = 0.5 * math.sin(1.3 * epoch_seconds(ts))
        return {**values, "tilt_deg": self.angle_deg + wobble}

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("component", sensor.class_code)


@dataclass(frozen=True, slots=True)
class Flooding(Window):
    """Water over the road: the wells of ``covers`` fill to ``level_m`` over ``rise``
    (``level_m`` above the well's alarm depth means water at the surface)."""

    kind: ClassVar[str] = "flooding"
    severity: ClassVar[str] = "urgent"
    sensor_kind: ClassVar[SensorKind] = SensorKind.COVER
    covers: tuple[str, ...]
    """The flooded covers' sensor ids; the first is where the flood is reported from."""
    start: datetime
    duration: timedelta
    level_m: float = 2.0
    rise: timedelta = FLOOD_RISE
    _members: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_window()
        if not self.covers:
            raise ValueError("a flood needs at least one cover")
        if not 0.0 < self.level_m <= 10.0:
            raise ValueError(f"flood level must be in (0, 10] m, not {self.level_m}")
        if self.rise < timedelta(0):
            raise ValueError(f"rise must not be negative, not {self.rise}")
        object.__setattr__(self, "_members", frozenset(self.covers))

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        return self.covers

    @classmethod
    def around(
        cls,
        city: City,
        sensor_id: str,
        start: datetime,
        duration: timedelta,
        level_m: float = 2.0,
        radius_m: float = 300.0,
    ) -> Flooding:
        """A low spot floods: ``sensor_id``'s well and every cover within ``radius_m``."""
        nearby = city.neighbours(sensor_id, radius_m, SensorKind.COVER)
        return cls((sensor_id, *(s.sensor_id for s, _ in nearby)), start, duration, level_m)

    @classmethod
    def in_district(
        cls,
        city: City,
        district_code: str,
        start: datetime,
        duration: timedelta,
        level_m: float = 2.0,
    ) -> Flooding:
        """A storm floods every cover of a district."""
        covers = tuple(
            sensor.sensor_id
            for station in city.stations
            if station.district_code == district_code
            for sensor in station.sensors
            if sensor.kind is SensorKind.COVER
        )
        if not covers:
            raise ValueError(f"district {district_code} has no covers in this city")
        return cls(covers, start, duration, level_m)

    def applies_to(self, sensor_id: str) -> bool:
        return sensor_id in self._members

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        elapsed = max(0.0, self.elapsed_s(ts))
        rise_s = self.rise.total_seconds()
        filled = 1.0 if rise_s == 0 else min(1.0, elapsed / rise_s)
        level = values.get("water_level_m", 0.0)
        peak = self.level_m + 0.02 * math.sin(0.7 * epoch_seconds(ts))
        return {**values, "water_level_m": level + max(0.0, peak - level) * filled}

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("event", "0406")


@dataclass(frozen=True, slots=True)
class GasLeak(OneSensor):
    """Methane leaking into a sewer or gas well: CH4 builds up towards ``ppm``."""

    kind: ClassVar[str] = "gas_leak"
    severity: ClassVar[str] = "critical"
    sensor_kind: ClassVar[SensorKind] = SensorKind.COVER
    sensor_id: str
    start: datetime
    duration: timedelta
    ppm: float = 10_000.0
    """20 % of methane's lower explosive limit."""

    def __post_init__(self) -> None:
        self._check_window()
        if not 0.0 < self.ppm <= 1_000_000.0:
            raise ValueError(f"gas concentration must be in (0, 1e6] ppm, not {self.ppm}")

    @classmethod
    def suits(cls, sensor: SensorInfo) -> bool:
        return sensor.kind is SensorKind.COVER and sensor.class_code in GAS_COVER_CLASSES

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        elapsed = max(0.0, self.elapsed_s(ts))
        built = 1.0 - math.exp(-elapsed / GAS_BUILD_UP.total_seconds())
        base = values.get("gas_ppm", 0.0)
        target = self.ppm * (1.0 + 0.03 * math.sin(0.9 * epoch_seconds(ts)))
        return {**values, "gas_ppm": base + max(0.0, target - base) * built}

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        return ("event", "0403")
