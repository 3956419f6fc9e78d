"""A seeded, deterministic model of the city's IoT fleet: districts, base stations, sensors.

Everything is drawn from one ``random.Random(seed)``: the same seed builds the same city, down
to every component id, grid code and coordinate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from protocol import SensorInfo, SensorKind
from protocol.gbt30428 import COMPONENT_MINOR

METRES_PER_DEGREE_LAT = 111_320.0
STATION_SPREAD_M = 3_000.0
"""How far a station may sit from its district's centre."""
SENSOR_SPREAD_M = 300.0
"""How far a sensor may sit from its station (radio range of a shared base station)."""

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


@dataclass(frozen=True, slots=True)
class District:
    """A county-level district (区) with an approximate centre and a few of its roads."""

    code: str
    name: str
    lon: float
    lat: float
    roads: tuple[str, ...]


ZHENGZHOU_DISTRICTS: dict[str, District] = {
    d.code: d
    for d in (
        District("410102", "中原区", 113.613, 34.748, ("建设路", "中原路", "桐柏路", "伏牛路")),
        District("410103", "二七区", 113.640, 34.724, ("大学路", "京广路", "航海路", "兴华街")),
        District(
            "410104", "管城回族区", 113.677, 34.754, ("紫荆山路", "城东路", "商城路", "东大街")
        ),
        District("410105", "金水区", 113.661, 34.800, ("花园路", "经三路", "农业路", "纬五路")),
        District("410106", "上街区", 113.309, 34.803, ("中心路", "济源路", "淮阳路", "新安路")),
        District("410108", "惠济区", 113.617, 34.867, ("天河路", "开元路", "江山路", "英才街")),
    )
}
DEFAULT_DISTRICTS = ("410102", "410103", "410104", "410105")


@dataclass(frozen=True, slots=True)
class Station:
    """A shared IoT base station (物联网共享基站) and the sensors that report through it."""

    station_id: str
    district_code: str
    lon: float
    lat: float
    sensors: tuple[SensorInfo, ...]


@dataclass(frozen=True)
class City:
    seed: int
    districts: tuple[District, ...]
    stations: tuple[Station, ...]

    @property
    def sensors(self) -> Iterator[SensorInfo]:
        for station in self.stations:
            yield from station.sensors

    def sensor(self, sensor_id: str) -> SensorInfo:
        """The sensor with this id; ``KeyError`` if the city has none."""
        return self._sensor_index[sensor_id][1]

    def station(self, station_id: str) -> Station:
        """The station with this id; ``KeyError`` if the city has none."""
        return self._station_index[station_id]

    def station_of(self, sensor_id: str) -> Station:
        """The station a sensor reports through; ``KeyError`` if the city has no such sensor."""
        return self._sensor_index[sensor_id][0]

    @cached_property
    def _station_index(self) -> dict[str, Station]:
        return {station.station_id: station for station in self.stations}

    @cached_property
    def _sensor_index(self) -> dict[str, tuple[Station, SensorInfo]]:
        return {s.sensor_id: (st, s) for st in self.stations for s in st.sensors}


@dataclass(frozen=True, slots=True)
class _Site:
    """Where a station stands: the codes and street its sensors share."""

    station_id: str
    district: District
    lon: float
    lat: float
    street: int
    community: int
    road: str


def build_city(
    seed: int = 7,
    stations_per_district: int = 2,
    covers_per_station: int = 3,
    pressure_per_station: int = 1,
    poles_per_station: int = 1,
    districts: Sequence[str] | None = None,
) -> City:
    """Build a city; the same arguments always give the same city."""
    if not 1 <= stations_per_district <= 999:
        raise ValueError(f"stations_per_district must be 1..999, not {stations_per_district}")
    counts = {
        SensorKind.COVER: covers_per_station,
        SensorKind.PRESSURE: pressure_per_station,
        SensorKind.POLE: poles_per_station,
    }
    if any(not 0 <= n <= 99 for n in counts.values()):
        raise ValueError(f"sensors per station must be 0..99 of each kind, not {counts}")
    chosen = tuple(_district(code) for code in (districts or DEFAULT_DISTRICTS))
    rng = random.Random(seed)
    sequences: dict[str, int] = {}
    stations = tuple(
        _station(rng, _site(rng, district, n), counts, sequences)
        for district in chosen
        for n in range(1, stations_per_district + 1)
    )
    return City(seed=seed, districts=chosen, stations=stations)


def _district(code: str) -> District:
    try:
        return ZHENGZHOU_DISTRICTS[code]
    except KeyError:
        known = ", ".join(sorted(ZHENGZHOU_DISTRICTS))
        raise ValueError(f"unknown district {code!r}; known: {known}") from None


def _site(rng: random.Random, district: District, number: int) -> _Site:
    lon, lat = _scatter(rng, district.lon, district.lat, STATION_SPREAD_M)
    return _Site(
        station_id=f"st-{district.code}-{number:03d}",
        district=district,
        lon=lon,
        lat=lat,
        street=rng.randint(1, 12),
        community=rng.randint(1, 30),
        road=rng.choice(district.roads),
    )


def _station(
    rng: random.Random, site: _Site, counts: dict[SensorKind, int], sequences: dict[str, int]
) -> Station:
    sensors = tuple(
        _sensor(rng, site, kind, index, sequences)
        for kind, count in counts.items()
        for index in range(1, count + 1)
    )
    return Station(site.station_id, site.district.code, site.lon, site.lat, sensors)


def _sensor(
    rng: random.Random, site: _Site, kind: SensorKind, index: int, sequences: dict[str, int]
) -> SensorInfo:
    class_code = _class_code(rng, kind)
    county = site.district.code
    prefix = f"{county}{class_code}"
    sequences[prefix] = sequences.get(prefix, 0) + 1
    lon, lat = _scatter(rng, site.lon, site.lat, SENSOR_SPREAD_M)
    grid = rng.randint(1, 8)
    return SensorInfo(
        sensor_id=f"{site.station_id}.{kind.value}-{index:02d}",
        kind=kind,
        class_code=class_code,
        component_id=f"{prefix}{sequences[prefix]:06d}",
        grid_code=f"{county}{site.street:03d}{site.community:03d}{grid:02d}",
        lon=round(lon, 6),
        lat=round(lat, 6),
        address=f"郑州市{site.district.name}{site.road}{rng.randint(1, 300)}号附近 "
        f"{COMPONENT_MINOR[class_code]}",
    )


def _class_code(rng: random.Random, kind: SensorKind) -> str:
    if kind is SensorKind.PRESSURE:
        return PRESSURE_WELL_CLASS
    weights = COVER_CLASS_WEIGHTS if kind is SensorKind.COVER else POLE_CLASS_WEIGHTS
    return rng.choices(tuple(weights), weights=tuple(weights.values()))[0]


def _scatter(rng: random.Random, lon: float, lat: float, radius_m: float) -> tuple[float, float]:
    """A point uniformly within ``radius_m`` of (lon, lat)."""
    distance = radius_m * math.sqrt(rng.random())
    bearing = rng.uniform(0.0, 2 * math.pi)
    north = distance * math.cos(bearing) / METRES_PER_DEGREE_LAT
    east = distance * math.sin(bearing) / (METRES_PER_DEGREE_LAT * math.cos(math.radians(lat)))
    return lon + east, lat + north
