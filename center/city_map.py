"""The city map from the registry's own data: districts, stations and sensors placed by the
coordinates the stations' births give. Pure: no I/O.

A district is the county of a component id (its first 6 digits), placed at the mean of its
sensors and outlined by the convex hull of its sensors grown by ``OUTLINE_PAD_M``; its name
comes from ``DISTRICT_NAMES`` when the code is one the center knows. The outline is what our
sensors cover, not the county's legal boundary (which the center does not have).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

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
OUTLINE_PAD_M = 250.0
"""How far a district's outline stands off its outermost sensors, in metres."""
_METRES_PER_DEGREE = 111_320.0  # of latitude, and of longitude at the equator
_PAD_CORNERS = 8  # each outermost sensor grown into an octagon

Point = tuple[float, float]


def _mean(points: Sequence[Point]) -> Point:
    return (
        sum(p[0] for p in points) / len(points),
        sum(p[1] for p in points) / len(points),
    )


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def convex_hull(points: Iterable[Point]) -> list[Point]:
    """The convex hull, counter-clockwise from the lowest-left point, without collinear points
    (Andrew's monotone chain); one or two points are their own hull."""
    ordered = sorted(set(points))
    if len(ordered) <= 2:
        return ordered
    lower: list[Point] = []
    upper: list[Point] = []
    for chain, run in ((lower, ordered), (upper, reversed(ordered))):
        for point in run:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], point) <= 0:
                chain.pop()
            chain.append(point)
    return lower[:-1] + upper[:-1]


def _outermost(points: Sequence[Point]) -> list[Point]:
    """The points that may be on the hull: all but those strictly inside the polygon of the
    extreme points in x, y, x+y and x−y (Akl–Toussaint), found with numpy: a district of
    100,000 sensors keeps a few hundred for the hull."""
    if len(points) < 64:
        return list(points)
    xy = np.asarray(points, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    extremes = {int(pick(key)) for key in (x, y, x + y, x - y) for pick in (np.argmin, np.argmax)}
    polygon = convex_hull(points[i] for i in extremes)
    if len(polygon) < 3:
        return list(points)
    inside = np.ones(len(xy), dtype=bool)
    for (ax, ay), (bx, by) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0
    return [points[i] for i in np.flatnonzero(~inside).tolist()]


def outline(points: Sequence[Point], pad_m: float = OUTLINE_PAD_M) -> list[Point]:
    """The convex hull of ``points`` (lon, lat) grown by about ``pad_m`` metres (each corner an
    octagon of that radius, scaled for the latitude), counter-clockwise, rounded to 1e-6°."""
    lat = _mean(points)[1]
    dlat = pad_m / _METRES_PER_DEGREE
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    corners = [
        (math.cos(2 * math.pi * k / _PAD_CORNERS), math.sin(2 * math.pi * k / _PAD_CORNERS))
        for k in range(_PAD_CORNERS)
    ]
    grown = [
        (x + dlon * dx, y + dlat * dy)
        for x, y in convex_hull(_outermost(points))
        for dx, dy in corners
    ]
    return [(round(x, 6), round(y, 6)) for x, y in convex_hull(grown)]


def city_map(
    sensors: Sequence[tuple[str, SensorInfo]],
    station_status: Mapping[str, StationStatus],
    sensor_limit: int = SENSOR_LIMIT,
) -> CityMap:
    """``sensors``: (owner station id, birth info) pairs; ``station_status``: by station id."""
    by_district: dict[str, list[Point]] = defaultdict(list)
    by_station: dict[str, list[Point]] = defaultdict(list)
    for station_id, info in sensors:
        point = (info.lon, info.lat)
        by_district[info.component_id[:6]].append(point)
        by_station[station_id].append(point)
    districts = [
        DistrictOut(
            code=code,
            name=DISTRICT_NAMES.get(code),
            lon=lon,
            lat=lat,
            sensors=len(pts),
            outline=outline(pts),
        )
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
