"""``/api/v1/sensors/{sensor_id}``: one sensor, from the station registry.

Answers 503 when the node was built without a registry (``create_app(registry=None)``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from center.api.deps import RegistryDep
from center.schemas_registry import LatestReadingOut, SensorOut
from center.views import SensorRecord

router = APIRouter(prefix="/api/v1/sensors", tags=["sensors"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No birth names it and it never sent a reading."},
    503: {"description": "This node has no station registry."},
}


def sensor_out(record: SensorRecord) -> SensorOut:
    info, latest = record.info, record.latest
    return SensorOut(
        sensor_id=record.sensor_id,
        registered=info is not None,
        owner_station_id=record.owner_station_id,
        reporting_station_id=record.reporting_station_id,
        kind=None if info is None else info.kind,
        class_code=None if info is None else info.class_code,
        component_id=None if info is None else info.component_id,
        grid_code=None if info is None else info.grid_code,
        lon=None if info is None else info.lon,
        lat=None if info is None else info.lat,
        address=None if info is None else info.address,
        last_seen=record.last_seen,
        latest=None if latest is None else LatestReadingOut(ts=latest.ts, values=latest.values),
    )


@router.get("/{sensor_id}", response_model=SensorOut, responses=RESPONSES)
async def get_sensor(sensor_id: str, registry: RegistryDep) -> SensorOut:
    record = registry.sensor_summary(sensor_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"sensor {sensor_id} not known")
    return sensor_out(record)
