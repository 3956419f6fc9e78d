"""API schemas of ``GET /api/v1/map``: the city as our own sensors describe it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from center.schemas_registry import StationStatus
from protocol import SensorKind


class DistrictOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(
        pattern=r"^\d{6}$", description="County code: a component id's first 6 digits."
    )
    name: str | None = Field(description="Its name, when the center knows the code; else null.")
    lon: float = Field(description="Mean longitude of its sensors.")
    lat: float = Field(description="Mean latitude of its sensors.")
    sensors: int = Field(description="Registered sensors in it.")
    outline: list[tuple[float, float]] = Field(
        description="What its sensors cover: the convex hull of their [lon, lat] grown by"
        " about 250 m, a polygon (counter-clockwise, not closed)."
    )


class MapStationOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    station_id: str
    status: StationStatus
    lon: float = Field(description="Mean longitude of the sensors its birth named.")
    lat: float
    sensors: int


class MapSensorOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    sensor_id: str
    station_id: str
    kind: SensorKind
    class_code: str
    district: str
    lon: float
    lat: float


class CityMap(BaseModel):
    """Districts, stations and sensors with coordinates (WGS 84 lon/lat), and their bounds."""

    districts: list[DistrictOut]
    stations: list[MapStationOut] = Field(description="Stations whose birth named sensors.")
    sensors: list[MapSensorOut] = Field(description="Up to `sensor_limit` sensors, by id.")
    sensors_total: int
    bounds: list[float] | None = Field(
        description="[west, south, east, north] over every registered sensor; null when none."
    )
