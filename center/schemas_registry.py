"""API schemas of the station registry: stations, their presence, and sensors."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol import SensorKind

StationStatus = Literal["online", "offline", "silent"]


class StationOut(BaseModel):
    """A station as the registry knows it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    station_id: str
    status: StationStatus = Field(
        description="online after its birth, offline after its death, silent when online but"
        " nothing came from it for the configured period."
    )
    boot_epoch: int
    status_since: AwareDatetime = Field(description="Station clock of its last birth or death.")
    last_seen: AwareDatetime | None = Field(
        description="Wall time ingest last received anything from it."
    )
    sensor_count: int = Field(description="Sensors its last birth named.")
    lost_readings: int = Field(
        default=0,
        description="Readings its outbox gave up unsent (full, too old, damaged, or asked for"
        " after its retention window), from its gap reports, each report counted once.",
    )


class StationPage(BaseModel):
    items: list[StationOut]
    total: int


class LatestReadingOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    ts: AwareDatetime = Field(description="Device time of the newest reading.")
    values: dict[str, float]


class SensorOut(BaseModel):
    """A sensor: what its station's birth said about it, and what it last sent."""

    model_config = ConfigDict(frozen=True)

    sensor_id: str
    registered: bool = Field(description="A station's birth names it.")
    owner_station_id: str | None = Field(description="The station whose birth names it.")
    reporting_station_id: str | None = Field(
        description="The station whose telemetry last carried it (differs from the owner only"
        " when something is miswired)."
    )
    kind: SensorKind | None
    class_code: str | None = Field(description="GB/T 30428 class of the watched asset.")
    component_id: str | None
    grid_code: str | None
    lon: float | None
    lat: float | None
    address: str | None
    last_seen: AwareDatetime | None = Field(description="Wall time of its last reading.")
    latest: LatestReadingOut | None = Field(description="Its newest reading by device time.")
