"""Payload models: one frozen pydantic model per MQTT payload.

Every payload carries ``v`` (its schema version). A consumer rejects versions it does not
know with a reason instead of guessing. Timestamps are timezone-aware (RFC 3339 with offset);
naive timestamps are rejected because they cannot be placed in event time.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from protocol.gbt30428 import COMPONENT_MINOR
from protocol.topics import STATION_ID_PATTERN

SCHEMA_VERSION: Final = 1
MAX_READINGS_PER_BATCH = 1000
SEQ_MAX = 2**64 - 1

SensorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
StationId = Annotated[str, Field(pattern=STATION_ID_PATTERN)]
ValueName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class SensorKind(StrEnum):
    """What a sensor measures, and so which value names its readings carry.

    - ``cover``: smart manhole cover — ``tilt_deg`` (angle from its installed angle),
      optionally ``water_level_m``, ``gas_ppm``, ``battery_v``, ``signal_dbm``.
    - ``pressure``: water-main pressure — ``pressure_mpa``, optionally ``battery_v``,
      ``signal_dbm``.
    - ``pole``: utility pole / street lamp — ``tilt_deg``, optionally ``vibration_g``.

    ``KIND_VALUES`` is the same list with units; rules may only watch these names.
    """

    COVER = "cover"
    PRESSURE = "pressure"
    POLE = "pole"


KIND_VALUES: Final[dict[SensorKind, dict[str, str]]] = {
    SensorKind.COVER: {
        "tilt_deg": "angle from the installed angle, degrees",
        "water_level_m": "water depth in the well, metres",
        "gas_ppm": "CH4 in the well, ppm (sewer and gas wells)",
        "battery_v": "battery voltage, volts",
        "signal_dbm": "radio signal strength, dBm",
    },
    SensorKind.PRESSURE: {
        "pressure_mpa": "water-main pressure, MPa",
        "battery_v": "battery voltage, volts",
        "signal_dbm": "radio signal strength, dBm",
    },
    SensorKind.POLE: {
        "tilt_deg": "lean from vertical, degrees",
        "vibration_g": "peak vibration, g",
    },
}
"""The payload model of each kind: the value names its readings may carry, with their units.
A rule may only watch one of these; a reading carrying another name is counted, not evaluated."""


def kind_values(kind: SensorKind) -> frozenset[str]:
    return frozenset(KIND_VALUES[kind])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reading(_Frozen):
    """One sample of one sensor, stamped by the device's own clock."""

    sensor_id: SensorId
    kind: SensorKind
    ts: AwareDatetime = Field(description="Device timestamp (event time).")
    values: dict[ValueName, float] = Field(
        min_length=1,
        max_length=32,
        description="Measured values by name. Each kind has its own names (KIND_VALUES): "
        + "; ".join(f"{kind.value}: {', '.join(names)}" for kind, names in KIND_VALUES.items())
        + ". Other names are counted by the rules engine, not evaluated.",
    )

    @field_validator("values")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"non-finite values for {', '.join(sorted(bad))}")
        return values


class TelemetryBatch(_Frozen):
    """A batch of readings from one station's edge agent.

    ``(station_id, boot_epoch, seq)`` identifies the batch: ingest uses it to drop
    re-sent batches. ``seq`` starts at 0 on every boot and increases by one per batch.
    """

    v: Literal[1] = SCHEMA_VERSION
    station_id: StationId
    boot_epoch: int = Field(ge=0, le=SEQ_MAX, description="Changes on every agent boot.")
    seq: int = Field(ge=0, le=SEQ_MAX, description="Batch sequence number within a boot.")
    sent_at: AwareDatetime = Field(description="Edge clock when the batch was sent.")
    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class SensorInfo(_Frozen):
    """A sensor as installed: what it is, which asset it watches, and where."""

    sensor_id: SensorId
    kind: SensorKind
    class_code: str = Field(
        pattern=r"^01\d\d$", description="GB/T 30428 component class of the watched asset."
    )
    component_id: str = Field(pattern=r"^\d{16}$", description="16-digit component id.")
    grid_code: str = Field(pattern=r"^\d{14}$", description="14-digit responsibility grid.")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    address: str = Field(default="", max_length=200)

    @field_validator("class_code")
    @classmethod
    def _known_class(cls, code: str) -> str:
        if code not in COMPONENT_MINOR:
            raise ValueError(f"unknown GB/T 30428 component class {code}")
        return code


class StationState(_Frozen):
    """Retained birth (``online``, with the station's sensors) or death (``offline``)."""

    v: Literal[1] = SCHEMA_VERSION
    station_id: StationId
    status: Literal["online", "offline"]
    boot_epoch: int = Field(ge=0, le=SEQ_MAX)
    ts: AwareDatetime
    sensors: list[SensorInfo] = Field(default_factory=list, max_length=10_000)
