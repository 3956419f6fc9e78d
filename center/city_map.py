"""The city map from the registry's own data: districts, stations and sensors placed by the
coordinates the stations' births give. Pure: no I/O.

A district is the county of a component id (its first 6 digits), placed at the mean of its
sensors; its name comes from ``DISTRICT_NAMES`` when the code is one the center knows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from center.schemas_map import CityMap, DistrictOut, MapSensorOut, MapStationOut
from center.schemas_registry import StationStatus
from protocol import SensorInfo

DISTRICT_NAMES: Mapping[str, str] = {
    "410102": "中原区",
    "410103": "二七区",
    "410104": "管城回族区",
    "410105": "金水区",
    "410106": "上街区",
    "410108": "惠济区",
    "410122": "中牟县",
}
"""Zhengzhou's county codes (GB/T 2260) the deployment covers."""

SENSOR_LIMIT = 5000
"""Sensors listed at most: a browser draws this many points; bounds and districts use all."""


def _mean(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    return (
        sum(p[0] for p in points) / len(points),
        sum(p[1] for p in points) / len(points),
    )


def city_map(
    sensors: Sequence[tuple[str, SensorInfo]],
    station_status: Mapping[str, StationStatus],
    sensor_limit: int = SENSOR_LIMIT,
) -> CityMap:
    """``sensors``: (owner station id, birth info) pairs; ``station_status``: by station id."""
    by_district: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_station: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for station_id, info in sensors:
        point = (info.lon, info.lat)
        by_district[info.component_id[:6]].append(point)
        by_station[station_id].append(point)
    districts = [
        DistrictOut(code=code, name=DISTRICT_NAMES.get(code), lon=lon, lat=lat, sensors=len(pts))
        for code, pts in sorted(by_district.items())
        for lon, lat in [_mean(pts)]
    ]
    stations = [
        MapStationOut(
            station_id=station_id,
            status=station_status.get(station_id, "offline"),
            lon=lon,
            lat=lat,
            sensors=len(pts),
        )
        for station_id, pts in sorted(by_station.items())
        for lon, lat in [_mean(pts)]
    ]
    listed = [
        MapSensorOut(
            sensor_id=info.sensor_id,
            station_id=station_id,
            kind=info.kind,
            class_code=info.class_code,
            district=info.component_id[:6],
            lon=info.lon,
            lat=info.lat,
        )
        for station_id, info in sensors[:sensor_limit]
    ]
    bounds = None
    if sensors:
        lons = [info.lon for _, info in sensors]
        lats = [info.lat for _, info in sensors]
        bounds = [min(lons), min(lats), max(lons), max(lats)]
    return CityMap(
        districts=districts,
        stations=stations,
        sensors=listed,
        sensors_total=len(sensors),
        bounds=bounds,
    )
