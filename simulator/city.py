"""A seeded, deterministic model of the city's IoT fleet: districts, base stations, sensors.

The same arguments always build the same city, down to every component id, grid code and
coordinate. Each district is laid out from its own stream (``simulator.layout``): water mains
under a few roads, shared base stations beside them, and around each station its covers,
pressure sensors (on the main) and poles (in a row along the road). A station's sensors are
built when first asked for, so a city of a million sensors costs little until it is walked.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from protocol import SensorInfo, SensorKind
from simulator.geo import distance_m, local_xy
from simulator.layout import (
    COVER_CLASS_WEIGHTS,
    POLE_CLASS_WEIGHTS,
    PRESSURE_WELL_CLASS,
    SENSOR_SPREAD_M,
    SEQUENCE_MAX,
    STATION_SPREAD_M,
    StationPlan,
    build_sensors,
    plan_stations,
)

__all__ = [
    "COVER_CLASS_WEIGHTS",
    "DEFAULT_DISTRICTS",
    "POLE_CLASS_WEIGHTS",
    "PRESSURE_WELL_CLASS",
    "SENSOR_SPREAD_M",
    "STATION_SPREAD_M",
    "ZHENGZHOU_DISTRICTS",
    "City",
    "District",
    "Station",
    "build_city",
    "city_of_size",
]

MAX_STATIONS_PER_DISTRICT = 99_999
MAX_SENSORS_PER_KIND = 999
NEIGHBOUR_CELL_M = 1_000.0
"""Cell size of the spatial index that finds stations near a point."""
_ORIGIN = (113.6, 34.75)
"""Reference point of the spatial index (central Zhengzhou)."""
_KINDS = (SensorKind.COVER, SensorKind.PRESSURE, SensorKind.POLE)


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
        District("410103", "二七区", 113.640, 34.724, ("航海路", "兴华街", "大学路", "京广路")),
        District(
            "410104", "管城回族区", 113.677, 34.754, ("商城路", "东大街", "紫荆山路", "城东路")
        ),
        District("410105", "金水区", 113.661, 34.800, ("农业路", "纬五路", "花园路", "经三路")),
        District("410106", "上街区", 113.309, 34.803, ("中心路", "济源路", "淮阳路", "新安路")),
        District("410108", "惠济区", 113.617, 34.867, ("天河路", "开元路", "江山路", "英才街")),
    )
}
DEFAULT_DISTRICTS = ("410102", "410103", "410104", "410105")


@dataclass(frozen=True)
class Station:
    """A shared IoT base station (物联网共享基站) and the sensors that report through it."""

    station_id: str
    district_code: str
    lon: float
    lat: float
    plan: StationPlan = field(repr=False)

    @property
    def road(self) -> str:
        """The road the station stands beside; its pressure sensors are on that road's main."""
        return self.plan.main.name

    @property
    def sensor_count(self) -> int:
        """How many sensors report through the station (without building them)."""
        return self.plan.sensor_count

    @cached_property
    def sensors(self) -> tuple[SensorInfo, ...]:
        return build_sensors(self.plan)

    def sensor(self, sensor_id: str) -> SensorInfo:
        """The station's sensor with this id; ``KeyError`` if it has none."""
        kind, _, number = sensor_id.rpartition(".")[2].rpartition("-")
        if number.isdigit():
            index, first = int(number) - 1, 0
            for counted_kind, count in self.plan.counts:
                if counted_kind.value == kind and 0 <= index < count:
                    sensor = self.sensors[first + index]
                    if sensor.sensor_id == sensor_id:
                        return sensor
                    break
                first += count
        raise KeyError(sensor_id)


@dataclass(frozen=True)
class City:
    seed: int
    districts: tuple[District, ...]
    stations: tuple[Station, ...]

    @property
    def sensors(self) -> Iterator[SensorInfo]:
        for station in self.stations:
            yield from station.sensors

    @property
    def sensor_count(self) -> int:
        return sum(station.sensor_count for station in self.stations)

    def sensor(self, sensor_id: str) -> SensorInfo:
        """The sensor with this id; ``KeyError`` if the city has none."""
        return self.station_of(sensor_id).sensor(sensor_id)

    def station(self, station_id: str) -> Station:
        """The station with this id; ``KeyError`` if the city has none."""
        return self._station_index[station_id]

    def station_of(self, sensor_id: str) -> Station:
        """The station a sensor reports through; ``KeyError`` if the city has no such sensor."""
        station = self._station_index.get(sensor_id.rpartition(".")[0])
        if station is None:
            raise KeyError(sensor_id)
        station.sensor(sensor_id)
        return station

    def neighbours(
        self, sensor_id: str, radius_m: float, kind: SensorKind | None = None
    ) -> list[tuple[SensorInfo, float]]:
        """Other sensors within ``radius_m`` of this one (of ``kind``, if given), nearest first.

        Symmetric: B is A's neighbour exactly when A is B's (for the same radius and kinds).
        """
        centre = self.sensor(sensor_id)
        found = []
        for station in self.stations_near(centre.lon, centre.lat, radius_m + SENSOR_SPREAD_M + 5):
            for other in station.sensors:
                if other.sensor_id == sensor_id or (kind is not None and other.kind is not kind):
                    continue
                distance = distance_m(centre.lon, centre.lat, other.lon, other.lat)
                if distance <= radius_m:
                    found.append((other, distance))
        return sorted(found, key=lambda pair: (pair[1], pair[0].sensor_id))

    def stations_near(self, lon: float, lat: float, radius_m: float) -> list[Station]:
        """Stations within ``radius_m`` of (lon, lat), in city order."""
        x, y = local_xy(lon, lat, *_ORIGIN)
        span = math.ceil(radius_m / NEIGHBOUR_CELL_M)
        cx, cy = _cell(x, y)
        found = []
        for i in range(cx - span, cx + span + 1):
            for j in range(cy - span, cy + span + 1):
                for number in self._station_cells.get((i, j), ()):
                    station = self.stations[number]
                    if distance_m(lon, lat, station.lon, station.lat) <= radius_m:
                        found.append(number)
        return [self.stations[number] for number in sorted(found)]

    @cached_property
    def _station_index(self) -> dict[str, Station]:
        return {station.station_id: station for station in self.stations}

    @cached_property
    def _station_cells(self) -> dict[tuple[int, int], list[int]]:
        cells: dict[tuple[int, int], list[int]] = {}
        for number, station in enumerate(self.stations):
            cell = _cell(*local_xy(station.lon, station.lat, *_ORIGIN))
            cells.setdefault(cell, []).append(number)
        return cells


def _cell(x: float, y: float) -> tuple[int, int]:
    return math.floor(x / NEIGHBOUR_CELL_M), math.floor(y / NEIGHBOUR_CELL_M)


def build_city(
    seed: int = 7,
    stations_per_district: int = 2,
    covers_per_station: int = 3,
    pressure_per_station: int = 3,
    poles_per_station: int = 1,
    districts: Sequence[str] | None = None,
) -> City:
    """Build a city; the same arguments always give the same city.

    The default (4 districts × 2 stations × 7 sensors) suits a live demo. Every station's
    pressure sensors lie on one main about 250 m apart, so a burst is seen by its neighbours.
    """
    if not 1 <= stations_per_district <= MAX_STATIONS_PER_DISTRICT:
        raise ValueError(
            f"stations_per_district must be 1..{MAX_STATIONS_PER_DISTRICT}, "
            f"not {stations_per_district}"
        )
    counts = (
        (SensorKind.COVER, covers_per_station),
        (SensorKind.PRESSURE, pressure_per_station),
        (SensorKind.POLE, poles_per_station),
    )
    if any(not 0 <= n <= MAX_SENSORS_PER_KIND for _, n in counts):
        raise ValueError(
            f"sensors per station must be 0..{MAX_SENSORS_PER_KIND} of each kind, "
            f"not {dict(counts)}"
        )
    per_district = stations_per_district * sum(n for _, n in counts)
    if per_district > SEQUENCE_MAX:
        raise ValueError(
            f"{per_district} sensors in one district overflow the 6-digit component sequence; "
            "spread them over more districts"
        )
    chosen = tuple(_district(code) for code in (districts or DEFAULT_DISTRICTS))
    if len({d.code for d in chosen}) != len(chosen):
        raise ValueError(f"districts listed twice: {[d.code for d in chosen]}")
    stations = tuple(
        _station(plan)
        for district in chosen
        for plan in plan_stations(seed, district, stations_per_district, counts)
    )
    return City(seed=seed, districts=chosen, stations=stations)


def city_of_size(
    sensors: int,
    seed: int = 7,
    *,
    sensors_per_station: int = 30,
    districts: Sequence[str] | None = None,
) -> City:
    """A city of about ``sensors`` sensors (within one station's worth per district).

    Shared base stations carry 10-50 sensors in practice; each carries ``sensors_per_station``
    here, about 70 % covers, 25 % poles and one pressure sensor in 15. Districts default to all
    six Zhengzhou districts, used as far as there are stations for them.
    """
    if sensors < 1 or not 1 <= sensors_per_station <= 3 * MAX_SENSORS_PER_KIND:
        raise ValueError(f"need sensors >= 1 and 1..2997 per station, not {sensors}")
    codes = tuple(districts or ZHENGZHOU_DISTRICTS)
    stations = max(1, round(sensors / sensors_per_station))
    used = codes[: min(len(codes), stations)]
    per_district = max(1, round(stations / len(used)))
    per_station = max(1, round(sensors / (per_district * len(used))))
    pressure = max(1, round(per_station / 15)) if per_station >= 3 else 0
    poles = round(0.25 * per_station)
    return build_city(
        seed=seed,
        stations_per_district=per_district,
        covers_per_station=per_station - pressure - poles,
        pressure_per_station=pressure,
        poles_per_station=poles,
        districts=used,
    )


def _district(code: str) -> District:
    try:
        return ZHENGZHOU_DISTRICTS[code]
    except KeyError:
        known = ", ".join(sorted(ZHENGZHOU_DISTRICTS))
        raise ValueError(f"unknown district {code!r}; known: {known}") from None


def _station(plan: StationPlan) -> Station:
    lon, lat = plan.lon_lat()
    return Station(plan.station_id, plan.district.code, lon, lat, plan)
