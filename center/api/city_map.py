"""``/api/v1/map``: districts, stations and sensors with coordinates, from the registry.

Answers 503 when the node was built without a registry (``create_app(registry=None)``).
"""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter

from center.api.deps import RegistryDep
from center.api.stations import UNAVAILABLE
from center.city_map import city_map
from center.schemas_map import CityMap
from center.schemas_registry import StationStatus

router = APIRouter(prefix="/api/v1/map", tags=["stations"])


@router.get("", response_model=CityMap, responses=UNAVAILABLE)
async def get_map(registry: RegistryDep) -> CityMap:
    """The city as the stations' births place it: each district (county code of the component
    ids) at the mean of its sensors, each station at the mean of its sensors, the sensors."""
    status = {s.station_id: cast(StationStatus, s.status) for s in registry.stations()}
    return city_map(registry.registered_sensors(), status)
