"""``/api/v1/stations``: the base stations and their presence, from the station registry.

Answers 503 when the node was built without a registry (``create_app(registry=None)``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from center.api.deps import RegistryDep
from center.schemas_registry import StationOut, StationPage, StationStatus

router = APIRouter(prefix="/api/v1/stations", tags=["stations"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "This node has no station registry."}
}


@router.get("", response_model=StationPage, responses=UNAVAILABLE)
async def list_stations(
    registry: RegistryDep,
    status: StationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> StationPage:
    """Stations by id."""
    stations = [s for s in registry.stations() if status is None or s.status == status]
    page = stations[offset : offset + limit]
    return StationPage(
        items=[StationOut.model_validate(s, from_attributes=True) for s in page],
        total=len(stations),
    )
