"""Where things stand in a district: water mains under its roads, base stations along them, and
the sensors around each station.

Stations are laid out from one stream per district; a station's sensors are drawn from the
station's own stream, so they can be built on demand (a million ``SensorInfo`` objects need not
exist at once) and always come out the same.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Literal

from protocol import SensorInfo, SensorKind
from protocol.gbt30428 import COMPONENT_MINOR
from simulator.geo import grid_code, offset

if TYPE_CHECKING:
    from simulator.city import District

STATION_SPREAD_M = 3_000.0
"""Radius of a small district's station area around its centre."""
STATION_SPACING_M = 150.0
"""Typical distance between shared base stations in a dense deployment (estimate); a district
with many stations grows its area to keep this spacing."""
SENSOR_SPREAD_M = 300.0
"""How far a sensor may sit from its station (reach of a shared base station's radio)."""
BLOCK_M = 500.0
"""Closest spacing of parallel arterial roads, each with a water main under it (estimate)."""
ROADSIDE_M = 15.0
"""A station stands this far from the road's centre line."""
PRESSURE_SPACING_M = 250.0
"""Distance between a station's pressure sensors along its main, when it has up to three."""
SEQUENCE_MAX = 999_999
"""Largest 6-digit component sequence number."""

COVER_CLASS_WEIGHTS: dict[str, int] = {
    "0102": 24,  # 污水井盖
    "0103": 24,  # 雨水井盖
    "0101": 14,  # 上水井盖
    "0105": 10,  # 电力井盖
    "0107": 10,  # 通讯井盖
    "0106": 4,  # 路灯井盖
    "0110": 4,  # 热力井盖
    "0111": 4,  # 燃气井盖
    "0108": 2,  # 电视井盖
    "0109": 2,  # 网络井盖
    "0112": 1,  # 公安井盖
    "0114": 1,  # 无主井盖
}
POLE_CLASS_WEIGHTS: dict[str, int] = {"0118": 6, "0117": 4}  # 路灯, 立杆/电杆
PRESSURE_WELL_CLASS = "0101"
"""A pressure sensor sits in a water-supply well (上水井盖) on the main it watches."""

Axis = Literal["ew", "ns"]
_CUMULATIVE = {
    kind: (tuple(weights), tuple(accumulate(weights.values())))
    for kind, weights in (
        (SensorKind.COVER, COVER_CLASS_WEIGHTS),
        (SensorKind.POLE, POLE_CLASS_WEIGHTS),
    )
}


@dataclass(frozen=True, slots=True)
class Main:
    """A straight road across a district with a water main under it."""

    name: str
    axis: Axis
    """``ew``: runs east-west; ``ns``: runs north-south."""
    offset_m: float
    """How far north (``ew``) or east (``ns``) of the district centre it runs."""

    def point(self, along_m: float, across_m: float = 0.0) -> tuple[float, float]:
        """(east, north) metres from the district centre of a point beside the road."""
        if self.axis == "ew":
            return along_m, self.offset_m + across_m
        return self.offset_m + across_m, along_m


@dataclass(frozen=True, slots=True)
class StationPlan:
    """What a station's sensors are built from: its place on a main and how many of each kind."""

    seed: int
    station_id: str
    district: District
    number: int
    stations_in_district: int
    main: Main
    along_m: float
    across_m: float
    counts: tuple[tuple[SensorKind, int], ...]

    @property
    def sensor_count(self) -> int:
        return sum(count for _, count in self.counts)

    def lon_lat(self) -> tuple[float, float]:
        east, north = self.main.point(self.along_m, self.across_m)
        lon, lat = offset(self.district.lon, self.district.lat, east, north)
        return round(lon, 6), round(lat, 6)


def area_radius_m(stations: int) -> float:
    """Radius of the area a district's ``stations`` spread over."""
    return max(STATION_SPREAD_M, STATION_SPACING_M * math.sqrt(stations / math.pi))


def plan_stations(
    seed: int, district: District, stations: int, counts: tuple[tuple[SensorKind, int], ...]
) -> list[StationPlan]:
    """The district's stations, numbered 1 … ``stations``, each beside one of its mains."""
    rng = random.Random(f"{seed}/{district.code}/layout")
    radius = area_radius_m(stations)
    mains = _mains(rng, district, stations, radius)
    chords = [math.sqrt(max(0.0, radius**2 - m.offset_m**2)) for m in mains]
    plans = []
    for number in range(1, stations + 1):
        (main, half), *_ = rng.choices(list(zip(mains, chords, strict=True)), weights=chords)
        reach = max(0.0, half - SENSOR_SPREAD_M)
        plans.append(
            StationPlan(
                seed=seed,
                station_id=f"st-{district.code}-{number:03d}",
                district=district,
                number=number,
                stations_in_district=stations,
                main=main,
                along_m=rng.uniform(-reach, reach),
                across_m=rng.choice((-ROADSIDE_M, ROADSIDE_M)),
                counts=counts,
            )
        )
    return plans


def _mains(rng: random.Random, district: District, stations: int, radius: float) -> list[Main]:
    """A few parallel mains each way, more for districts with many stations."""
    per_axis = max(2, min(round(math.sqrt(stations) / 1.5), int(2 * radius / BLOCK_M)))
    spacing = 1.6 * radius / per_axis
    axes: tuple[tuple[Axis, tuple[str, ...]], ...] = (
        ("ew", district.roads[:2]),
        ("ns", district.roads[2:4]),
    )
    mains = []
    for axis, named in axes:
        for k in range(per_axis):
            jitter = rng.uniform(-0.1, 0.1) * spacing
            name = named[k] if k < len(named) else f"{'纬' if axis == 'ew' else '经'}{k - 1}路"
            mains.append(Main(name, axis, -0.8 * radius + spacing * (k + 0.5) + jitter))
    return mains


def build_sensors(plan: StationPlan) -> tuple[SensorInfo, ...]:
    """The station's sensors; the same plan always gives the same sensors."""
    rng = random.Random(f"{plan.seed}/{plan.station_id}/sensors")
    ordinals: dict[str, int] = {}
    sensors = []
    for kind, count in plan.counts:
        for index in range(1, count + 1):
            class_code = _class_code(rng, kind)
            ordinals[class_code] = ordinals.get(class_code, 0) + 1
            along, across = _position(rng, plan, kind, index, count)
            sequence = (ordinals[class_code] - 1) * plan.stations_in_district + plan.number
            sensors.append(_sensor(plan, kind, index, class_code, sequence, along, across))
    return tuple(sensors)


def _class_code(rng: random.Random, kind: SensorKind) -> str:
    if kind is SensorKind.PRESSURE:
        return PRESSURE_WELL_CLASS
    classes, cumulative = _CUMULATIVE[kind]
    return rng.choices(classes, cum_weights=cumulative)[0]


def _position(
    rng: random.Random, plan: StationPlan, kind: SensorKind, index: int, count: int
) -> tuple[float, float]:
    """(along, across) the station's main: covers around the station, pressure sensors on the
    main itself, poles in a row on both sides of the road."""
    if kind is SensorKind.COVER:
        distance = SENSOR_SPREAD_M * math.sqrt(rng.random())
        bearing = rng.uniform(0.0, 2 * math.pi)
        along, across = distance * math.cos(bearing), distance * math.sin(bearing)
        return plan.along_m + along, plan.across_m + across
    if kind is SensorKind.PRESSURE:
        spacing = PRESSURE_SPACING_M if count <= 3 else 540.0 / (count - 1)
        along = (index - (count + 1) / 2) * spacing + rng.uniform(-15.0, 15.0)
        return plan.along_m + along, rng.uniform(-3.0, 3.0)
    side = rng.choice((-1.0, 1.0))
    return plan.along_m + rng.uniform(-280.0, 280.0), side * rng.uniform(12.0, 20.0)


def _sensor(
    plan: StationPlan,
    kind: SensorKind,
    index: int,
    class_code: str,
    sequence: int,
    along: float,
    across: float,
) -> SensorInfo:
    district = plan.district
    east, north = plan.main.point(along, across)
    lon, lat = offset(district.lon, district.lat, east, north)
    house = 1 + 2 * int(abs(along) / 30.0) + (0 if across >= 0 else 1)
    return SensorInfo(
        sensor_id=f"{plan.station_id}.{kind.value}-{index:02d}",
        kind=kind,
        class_code=class_code,
        component_id=f"{district.code}{class_code}{sequence:06d}",
        grid_code=grid_code(district.code, east, north),
        lon=round(lon, 6),
        lat=round(lat, 6),
        address=f"郑州市{district.name}{plan.main.name}{house}号附近 {COMPONENT_MINOR[class_code]}",
    )
