"""Flat-earth geometry at city scale: metres east and north of a point, distances, grid codes.

Over a few tens of kilometres an equirectangular projection is accurate to well under a metre
per kilometre, which is all a city model needs.
"""

from __future__ import annotations

import math

METRES_PER_DEGREE_LAT = 111_320.0

GRID_M = 1_000.0
"""Side of a responsibility grid (单元网格) cell. Zhengzhou manages ~1,394 km² in 857 grids
(~1.6 km² each, domain brief); urban-core grids are smaller, so 1 km² is a fair middle."""
GRIDS_PER_COMMUNITY = 3
"""A community (社区) is 3 × 3 grids; a street office (街道) is 3 × 3 communities."""
_STREET_SPAN = 31
"""Street blocks per axis that fit the 3-digit street code (1 … 961)."""


def metres_per_degree_lon(lat: float) -> float:
    return METRES_PER_DEGREE_LAT * math.cos(math.radians(lat))


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The point ``east_m`` east and ``north_m`` north of (lon, lat)."""
    return lon + east_m / metres_per_degree_lon(lat), lat + north_m / METRES_PER_DEGREE_LAT


def local_xy(lon: float, lat: float, origin_lon: float, origin_lat: float) -> tuple[float, float]:
    """Metres east and north of the origin."""
    return (
        (lon - origin_lon) * metres_per_degree_lon(origin_lat),
        (lat - origin_lat) * METRES_PER_DEGREE_LAT,
    )


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance in metres; symmetric in its two points."""
    east = (lon2 - lon1) * metres_per_degree_lon((lat1 + lat2) / 2)
    north = (lat2 - lat1) * METRES_PER_DEGREE_LAT
    return math.hypot(east, north)


def grid_code(county: str, east_m: float, north_m: float) -> str:
    """The 14-digit CJ/T 213 grid code of a point ``east_m``/``north_m`` from the county centre.

    6-digit county + 3-digit street + 3-digit community + 2-digit grid, derived from the point's
    position, so sensors that stand close together share their grid.
    """
    n = GRIDS_PER_COMMUNITY
    gx, gy = math.floor(east_m / GRID_M), math.floor(north_m / GRID_M)
    cx, cy = gx // n, gy // n
    sx, sy = cx // n + _STREET_SPAN // 2, cy // n + _STREET_SPAN // 2
    if not (0 <= sx < _STREET_SPAN and 0 <= sy < _STREET_SPAN):
        raise ValueError(f"point {east_m:.0f} m E, {north_m:.0f} m N is outside county {county}")
    street = 1 + sx * _STREET_SPAN + sy
    community = 1 + (cx % n) * n + cy % n
    grid = 1 + (gx % n) * n + gy % n
    return f"{county}{street:03d}{community:03d}{grid:02d}"
