"""API schemas: what the HTTP API and the live stream show, kept apart from storage rows."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol import SensorKind
from rules.alerts import Severity

CaseStatus = Literal["open", "cleared"]
CaseEventType = Literal["opened", "updated", "reopened", "cleared"]
"""``updated``: another sensor joined the incident; ``reopened``: a flapping condition
re-triggered a cleared case, which is open again and marked ``flapping``."""


class EvidencePoint(BaseModel):
    """One reading that made the case: its event time and the value of the rule's field."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    ts: AwareDatetime
    value: float


class CaseOut(BaseModel):
    """A case as the center shows it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    rule_id: str
    title: str
    severity: Severity
    category: Literal["component", "event"]
    class_code: str = Field(pattern=r"^\d{4}$", description="GB/T 30428 class, e.g. 0103.")
    class_name: str = Field(description="Minor class name, e.g. 雨水井盖.")
    major_name: str = Field(description="Major class name, e.g. 公用设施.")
    station_id: str
    sensor_id: str
    sensor_kind: SensorKind
    component_id: str | None
    grid_code: str | None
    district_code: str | None = Field(description="First 6 digits of the component id.")
    lon: float | None
    lat: float | None
    address: str
    status: CaseStatus
    field: str = Field(description="The reading value the rule watches, e.g. tilt_deg.")
    trigger_value: float
    threshold: float
    started_at: AwareDatetime = Field(description="Event time the condition began.")
    opened_at: AwareDatetime = Field(description="Event time the alert opened.")
    cleared_at: AwareDatetime | None
    detected_at: AwareDatetime = Field(description="Wall time ingest saw the alert.")
    updated_at: AwareDatetime
    evidence: list[EvidencePoint]
    unregistered: bool = Field(description="The sensor was not in the station registry.")
    members: list[str] = Field(
        description="Every sensor of the incident, first sensor first (a burst felt by"
        " neighbours, covers lifted by one flood)."
    )
    flags: list[str] = Field(
        description="What was unusual about the readings: clock_reset, clock_skew, late."
    )
    flapping: bool = Field(
        description="The condition kept coming and going: re-opened instead of new cases."
    )


class CasePage(BaseModel):
    items: list[CaseOut]
    total: int


class CaseEvent(BaseModel):
    """A case change on the live stream."""

    model_config = ConfigDict(frozen=True)

    type: CaseEventType
    case: CaseOut
