"""Payload models: one frozen pydantic model per MQTT payload.

Every payload carries ``v`` (its schema version). A consumer rejects versions it does not
know with a reason instead of guessing. Numbers are strict: a JSON string or boolean is never
read as a number (an integer is a fine float: JSON has one number type). Timestamps are
timezone-aware RFC 3339 inside ``[TIME_MIN, TIME_END)``; naive timestamps are rejected because
they cannot be placed in event time. The wire contract as prose: ``docs/contract.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from protocol.gbt30428 import COMPONENT_MINOR
from protocol.topics import STATION_ID_PATTERN

SCHEMA_VERSION: Final = 1
MAX_READINGS_PER_BATCH = 1000
SEQ_MAX = 2**64 - 1
MAX_RESEND_BATCHES = 10_000

TIME_MIN: Final = datetime(1970, 1, 1, tzinfo=UTC)
TIME_END: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""Every timestamp on the wire lies in ``[TIME_MIN, TIME_END)`` UTC. A device clock reset to
2000-01-01 is inside (the rules engine flags it); year 9999 is not (it overflows on the way to
UTC). ``boot_epoch`` is bounded the same way, in Unix seconds."""
BOOT_EPOCH_END: Final = int(TIME_END.timestamp())
TIME_FIELDS: Final = frozenset({"ts", "sent_at", "boot_epoch"})
"""Fields whose range errors are reported as ``bad_time`` rather than ``invalid``."""

# Patterns are anchored with ``^…$``: pydantic checks them with Rust's regex, where ``$`` is the
# end of the text (no trailing newline slips through), and JSON Schema reads them the same way.
SENSOR_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SensorId = Annotated[str, Field(pattern=SENSOR_ID_PATTERN)]
StationId = Annotated[str, Field(pattern=STATION_ID_PATTERN)]
ValueName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite JSON number; never a string or a boolean."""


def _rfc3339_only(value: object) -> object:
    """A time on the wire is an RFC 3339 string: never a number of seconds, in any form."""
    if isinstance(value, str):
        if not (value[4:5] == "-" and value[7:8] == "-"):
            raise ValueError(f"time {value[:40]!r} is not RFC 3339 (YYYY-MM-DDThh:mm:ss±hh:mm)")
    elif not isinstance(value, datetime):
        raise ValueError(f"a time is an RFC 3339 string, not {type(value).__name__}")
    return value


WireTime = Annotated[
    AwareDatetime,
    # The bounds before the validator: pydantic-core then checks them in Rust, inside the
    # datetime schema (after the validator they run as Python, ~2.5x the cost of decoding).
    Field(
        ge=TIME_MIN,
        lt=TIME_END,
        # the bounds in JSON Schema's words for formatted strings (ajv-formats' keywords)
        json_schema_extra={
            "formatMinimum": TIME_MIN.isoformat().replace("+00:00", "Z"),
            "formatExclusiveMaximum": TIME_END.isoformat().replace("+00:00", "Z"),
        },
    ),
    BeforeValidator(_rfc3339_only),
]
_TIME_RULE = "RFC 3339 with offset, in [1970-01-01, 2100-01-01) UTC"


class SensorKind(StrEnum):
    """What a sensor measures, and so which value names its readings carry.

    - ``cover``: smart manhole cover — ``tilt_deg`` (angle from its installed angle),
      optionally ``water_level_m``, ``gas_ppm``, ``battery_v``, ``signal_dbm``.
    - ``pressure``: water-main pressure — ``pressure_mpa``, optionally ``battery_v``,
      ``signal_dbm``.
    - ``pole``: utility pole / street lamp — ``tilt_deg``, optionally ``vibration_g``.

    ``KIND_VALUES`` is the same list with units; ``PRIMARY_VALUE`` the one every reading has.
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
A reading carrying another name is refused (``unknown_value``)."""
PRIMARY_VALUE: Final[dict[SensorKind, str]] = {
    SensorKind.COVER: "tilt_deg",
    SensorKind.PRESSURE: "pressure_mpa",
    SensorKind.POLE: "tilt_deg",
}
"""The value every reading of a kind carries; a reading without it is refused
(``missing_value``). The other names of ``KIND_VALUES`` are optional."""
_NAMES = {kind: frozenset(names) for kind, names in KIND_VALUES.items()}
assert all(PRIMARY_VALUE[kind] in _NAMES[kind] for kind in SensorKind)


def kind_values(kind: SensorKind) -> frozenset[str]:
    return _NAMES[kind]


def values_schema(kind: SensorKind) -> dict[str, Any]:
    """JSON Schema of one kind's ``values``, from ``KIND_VALUES`` and ``PRIMARY_VALUE``."""
    return {
        "type": "object",
        "properties": {
            name: {"type": "number", "description": unit}
            for name, unit in KIND_VALUES[kind].items()
        },
        "required": [PRIMARY_VALUE[kind]],
        "additionalProperties": False,
    }


def _values_by_kind(schema: dict[str, Any]) -> None:
    schema["allOf"] = [
        {
            "if": {"properties": {"kind": {"const": kind.value}}},
            "then": {"properties": {"values": values_schema(kind)}},
        }
        for kind in SensorKind
    ]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _version_required(schema: dict[str, Any]) -> None:
    schema["required"] = ["v", *schema.get("required", ())]


class _Versioned(_Frozen):
    """A payload with a schema version: defaulted in Python, required on the wire."""

    model_config = ConfigDict(json_schema_extra=_version_required)

    v: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Schema version; required on the wire."
    )

    @field_validator("v", mode="before")
    @classmethod
    def _integer(cls, value: object) -> object:
        if type(value) is not int:
            raise ValueError(f"the version is an integer, not {type(value).__name__}")
        return value


class Reading(_Frozen):
    """One sample of one sensor, stamped by the device's own clock."""

    model_config = ConfigDict(json_schema_extra=_values_by_kind)

    sensor_id: SensorId = Field(
        description="`<station_id>.<local id>`: a station publishes only its own sensors."
    )
    kind: SensorKind
    ts: WireTime = Field(
        description=f"Device clock when the sample was taken (event time); {_TIME_RULE}. "
        "Device clocks drift and reset: the rules engine checks them against `sent_at`."
    )
    values: dict[ValueName, Number] = Field(
        min_length=1,
        max_length=32,
        description="Measured values by name; each kind has its own names (with units below) "
        "and one it always carries: "
        + "; ".join(
            f"{kind.value}: {PRIMARY_VALUE[kind]} required, "
            + ", ".join(name for name in names if name != PRIMARY_VALUE[kind])
            + " optional"
            for kind, names in KIND_VALUES.items()
        )
        + ". A name the kind lacks, or a missing required one, refuses the batch.",
    )

    @model_validator(mode="after")
    def _values_of_kind(self) -> Self:
        names, values = _NAMES[self.kind], self.values
        if not names.issuperset(values):
            raise PydanticCustomError(
                "unknown_value",
                "a {kind} reading has no value {unknown}",
                {"kind": self.kind.value, "unknown": ", ".join(sorted(set(values) - names))},
            )
        if PRIMARY_VALUE[self.kind] not in values:
            raise PydanticCustomError(
                "missing_value",
                "a {kind} reading needs {name}",
                {"kind": self.kind.value, "name": PRIMARY_VALUE[self.kind]},
            )
        return self


BootEpoch = Annotated[
    StrictInt,
    Field(
        ge=0,
        lt=BOOT_EPOCH_END,
        description="The edge agent's boot number: greater on every boot of a station (the "
        "boot's Unix seconds from the edge clock, or the previous boot + 1 when the clock is "
        "behind or two boots share a second; kept on the station's disk). With `seq` it "
        "identifies a batch.",
    ),
]
Seq = Annotated[StrictInt, Field(ge=0, le=SEQ_MAX)]


class TelemetryBatch(_Versioned):
    """A batch of readings from one station's edge agent.

    ``(station_id, boot_epoch, seq)`` identifies the batch: ingest uses it to drop
    re-sent batches. ``seq`` increases by one per batch sealed in the station's outbox and
    keeps counting across boots; a batch keeps the boot it was sealed in, also when it is sent
    again after a restart. Alarm batches may overtake routine ones.
    Every reading's sensor belongs to the station (its id starts with ``<station_id>.``).
    """

    station_id: StationId
    boot_epoch: BootEpoch
    seq: Seq = Field(description="Batch number in the station's outbox (across boots).")
    sent_at: WireTime = Field(description=f"Edge clock when the batch was sent; {_TIME_RULE}.")
    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class SensorInfo(_Frozen):
    """A sensor as installed: what it is, which asset it watches, and where."""

    sensor_id: SensorId = Field(description="`<station_id>.<local id>`.")
    kind: SensorKind
    class_code: str = Field(
        pattern=r"^01[0-9]{2}$", description="GB/T 30428 component class of the watched asset."
    )
    component_id: str = Field(pattern=r"^[0-9]{16}$", description="16-digit component id.")
    grid_code: str = Field(pattern=r"^[0-9]{14}$", description="14-digit responsibility grid.")
    lon: Number = Field(ge=-180, le=180)
    lat: Number = Field(ge=-90, le=90)
    address: str = Field(default="", max_length=200)

    @field_validator("class_code")
    @classmethod
    def _known_class(cls, code: str) -> str:
        if code not in COMPONENT_MINOR:
            raise ValueError(f"unknown GB/T 30428 component class {code}")
        return code


class StationState(_Versioned):
    """Retained birth (``online``, with the station's sensors) or death (``offline``)."""

    station_id: StationId
    status: Literal["online", "offline"]
    boot_epoch: BootEpoch
    ts: WireTime = Field(
        description="Edge clock when the session came up (birth), or when the death was "
        f"written (the last will is written as the session comes up); {_TIME_RULE}."
    )
    sensors: list[SensorInfo] = Field(
        default_factory=list,
        max_length=10_000,
        description="The station's sensor inventory (birth); each sensor id starts with "
        "`<station_id>.`.",
    )


GapReason = Literal["bytes", "age", "corrupt", "store_lost", "expired"]
"""Why a station's outbox gave readings up unsent: full (bytes), too old (age), a damaged record,
a store that could not be opened, or (``expired``) a re-send asked for after its retention."""


class GapReport(_Versioned):
    """Readings a station's outbox gave up: a counted loss, announced until acknowledged.

    ``(station_id, boot_epoch, marker_id)`` identifies the report (a re-sent report is the
    same loss). ``first_seq``/``last_seq`` name the batches given up when they were sealed
    already (ingest closes those gaps instead of asking for them)."""

    station_id: StationId
    boot_epoch: BootEpoch
    marker_id: Seq
    reason: GapReason
    readings: StrictInt = Field(ge=0, description="Readings given up.")
    first_ts: WireTime | None = Field(default=None, description="Device time of the first.")
    last_ts: WireTime | None = Field(default=None, description="Device time of the last.")
    batches: StrictInt = Field(default=0, ge=0, description="Sealed batches among them.")
    first_seq: Seq | None = None
    last_seq: Seq | None = None
    sent_at: WireTime = Field(description=f"Edge clock when the report was sent; {_TIME_RULE}.")

    @model_validator(mode="after")
    def _seq_range(self) -> Self:
        if (self.first_seq is None) != (self.last_seq is None):
            raise ValueError("first_seq and last_seq come together")
        if (
            self.first_seq is not None
            and self.last_seq is not None
            and (self.first_seq > self.last_seq)
        ):
            raise ValueError("first_seq is after last_seq")
        return self


class ResendRequest(_Versioned):
    """The center asks a station for batches it never received (on the station's ``cmd``
    topic): the agent publishes those still in its retention window again, unchanged, and
    reports the rest as an ``expired`` gap."""

    command: Literal["resend"] = "resend"
    station_id: StationId
    request_id: Seq
    first_seq: Seq
    last_seq: Seq

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.first_seq > self.last_seq:
            raise ValueError("first_seq is after last_seq")
        if self.last_seq - self.first_seq >= MAX_RESEND_BATCHES:
            raise ValueError(f"at most {MAX_RESEND_BATCHES} batches per request")
        return self


class CommandAck(_Versioned):
    """A station's answer to a command (``ack`` topic): what it did with request ``request_id``."""

    station_id: StationId
    request_id: Seq
    command: Literal["resend"]
    resent: StrictInt = Field(ge=0, description="Batches published again.")
    pending: StrictInt = Field(ge=0, description="Batches of the range not sent yet (they come).")
    expired: StrictInt = Field(ge=0, description="Batches no longer kept (reported as a gap).")
    unknown: StrictInt = Field(ge=0, description="Seqs the station never sealed.")
    sent_at: WireTime


RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ThresholdKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}(\.(above|below))?$")]
"""A value name, or ``<value>.above`` / ``<value>.below`` when a rule tests the value twice."""
ConfigVersion = Annotated[StrictInt, Field(ge=1, le=SEQ_MAX)]
MAX_THRESHOLD_RULES = 256


class KindReportConfig(_Frozen):
    """Report-by-exception of one sensor kind: its heartbeat and its deadbands."""

    heartbeat_s: Number | None = Field(
        default=None, gt=0, le=86_400, description="Longest silence of a quiet sensor, seconds."
    )
    deadband: dict[ValueName, Annotated[Number, Field(ge=0)]] = Field(
        default_factory=dict,
        description="A value must move by more than this to be forwarded (per value name).",
    )


class ReportConfig(_Frozen):
    """Report-by-exception as the center wants it (the edge's alarm limits stay local)."""

    enabled: bool = True
    kinds: dict[SensorKind, KindReportConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_of_the_kind(self) -> Self:
        for kind, config in self.kinds.items():
            unknown = sorted(set(config.deadband) - _NAMES[kind])
            if unknown:
                raise PydanticCustomError(
                    "unknown_value",
                    "a {kind} reading has no value {unknown}",
                    {"kind": kind.value, "unknown": ", ".join(unknown)},
                )
        return self


class StationConfig(_Versioned):
    """The center's desired config of one station (retained on its ``config`` topic).

    The whole desired state, not a patch: a setting left out means the station's own (local)
    setting. The agent applies a ``config_version`` greater than the one it runs, validates the
    threshold overrides against its own rules, and answers with a ``ConfigAck``."""

    station_id: StationId
    config_version: ConfigVersion = Field(
        description="Greater on every change; an older or equal version is not applied again."
    )
    sample_interval_s: Number | None = Field(
        default=None, gt=0, le=86_400, description="Seconds between samples of the sensors."
    )
    batch_interval_s: Number | None = Field(
        default=None,
        gt=0,
        le=3_600,
        description="Longest wait, seconds, before an idle publisher looks at the outbox again.",
    )
    report: ReportConfig | None = Field(
        default=None, description="Report-by-exception (deadbands, heartbeats) per sensor kind."
    )
    thresholds: dict[RuleId, dict[ThresholdKey, Number]] = Field(
        default_factory=dict,
        max_length=MAX_THRESHOLD_RULES,
        description="New `above`/`below` limits of the edge's alarm rules: rule id -> value "
        "name (or `<value>.above` / `<value>.below` when the rule tests the value twice) -> "
        "limit. The station refuses a rule it lacks, a value the rule does not test with a "
        "plain above/below limit, and a limit its clear condition would contradict.",
    )
    issued_at: WireTime | None = Field(
        default=None, description=f"Center clock when the config was published; {_TIME_RULE}."
    )


class ConfigAck(_Versioned):
    """A station's answer to a ``StationConfig`` (``ack`` topic): applied, already current (an
    older or equal version), or rejected with the reason (the config in force is kept)."""

    station_id: StationId
    command: Literal["config"] = "config"
    status: Literal["applied", "current", "rejected"]
    config_version: StrictInt = Field(
        ge=0, le=SEQ_MAX, description="The version the station runs now (0: its local settings)."
    )
    offered_version: ConfigVersion | None = Field(
        default=None, description="The version of the config answered, when it could be read."
    )
    reason: str | None = Field(default=None, max_length=1000, description="Why it was rejected.")
    sent_at: WireTime


class IngestState(_Versioned):
    """Ingest's presence on ``citysense/v1/ingest/state`` (retained): ``online`` when its
    session is up, ``offline`` as its last will and on a clean stop."""

    status: Literal["online", "offline"]
    ts: WireTime = Field(description=f"When ingest said so (its clock); {_TIME_RULE}.")
