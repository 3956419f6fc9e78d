"""Encode and decode payloads; every failure becomes a ``PayloadError`` with a reason code.

Decoding parses and validates in one pass (pydantic-core's JSON parser): no Python recursion,
nesting deeper than the parser's limit (200 levels; a valid payload has 4) is ``too_deep``.
Whatever goes wrong inside, only ``PayloadError`` leaves ``decode_*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, from_json

from protocol.models import (
    SCHEMA_VERSION,
    TIME_FIELDS,
    CommandAck,
    ConfigAck,
    GapReport,
    IngestState,
    ResendRequest,
    StationConfig,
    StationState,
    TelemetryBatch,
)
from protocol.topics import StationTopic

RejectReason = Literal[
    "bad_topic",
    "too_large",
    "not_json",
    "too_deep",
    "bad_version",
    "invalid",
    "unknown_value",
    "missing_value",
    "bad_time",
    "station_mismatch",
    "foreign_sensor",
]
"""Why a message is refused; the ``reason`` label of ``citysense_ingest_rejected_total``."""
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)
MAX_PAYLOAD_BYTES = 1 << 20
M = TypeVar("M", bound=BaseModel)
S = TypeVar("S", GapReport, CommandAck, ResendRequest, StationConfig, ConfigAck)

_MODEL_REASONS: Final[frozenset[str]] = frozenset({"unknown_value", "missing_value"})
"""Error types the models raise themselves, named after their reject reason."""
_OUT_OF_RANGE: Final = frozenset({"greater_than_equal", "less_than"})


class PayloadError(ValueError):
    """A payload citysense refuses, with a machine-readable ``reason``."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def decode_telemetry(topic: StationTopic, payload: bytes) -> TelemetryBatch:
    batch = _decode(TelemetryBatch, payload)
    _check_station(topic, batch.station_id)
    _check_sensors(topic, (reading.sensor_id for reading in batch.readings))
    return batch


def decode_state(topic: StationTopic, payload: bytes) -> StationState:
    state = _decode(StationState, payload)
    _check_station(topic, state.station_id)
    _check_sensors(topic, (sensor.sensor_id for sensor in state.sensors))
    return state


def decode_ingest_state(payload: bytes) -> IngestState:
    return _decode(IngestState, payload)


def decode_gap(topic: StationTopic, payload: bytes) -> GapReport:
    return _from_station(GapReport, topic, payload)


def decode_ack(topic: StationTopic, payload: bytes) -> CommandAck:
    return _from_station(CommandAck, topic, payload)


def decode_command(topic: StationTopic, payload: bytes) -> ResendRequest:
    return _from_station(ResendRequest, topic, payload)


def decode_config(topic: StationTopic, payload: bytes) -> StationConfig:
    return _from_station(StationConfig, topic, payload)


def decode_config_ack(topic: StationTopic, payload: bytes) -> ConfigAck:
    return _from_station(ConfigAck, topic, payload)


def _from_station(model: type[S], topic: StationTopic, payload: bytes) -> S:
    """A message about one station, on that station's topic."""
    message = _decode(model, payload)
    _check_station(topic, message.station_id)
    return message


def decode_any_ack(topic: StationTopic, payload: bytes) -> CommandAck | ConfigAck:
    """Either answer of the ``ack`` topic, told apart by its ``command``."""
    if _command_of(payload) == "config":
        return decode_config_ack(topic, payload)
    return decode_ack(topic, payload)


def _command_of(payload: bytes) -> object:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        document = from_json(payload)
    except ValueError:
        return None
    return document.get("command") if isinstance(document, dict) else None


def _decode(model: type[M], payload: bytes) -> M:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        message = model.model_validate_json(payload)
    except ValidationError as exc:
        raise _refusal(exc, payload) from None
    except RecursionError:
        raise PayloadError("too_deep", "nested too deeply") from None
    except (ArithmeticError, TypeError, ValueError) as exc:  # a decoder bug must not kill ingest
        raise PayloadError("invalid", f"{type(exc).__name__}: {exc}") from None
    if "v" not in message.model_fields_set:
        raise PayloadError("bad_version", f"no schema version, expected {SCHEMA_VERSION}")
    return message


def _refusal(exc: ValidationError, payload: bytes) -> PayloadError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        too_deep = "recursion limit" in first["msg"]
        return PayloadError("too_deep" if too_deep else "not_json", first["msg"])
    if first["loc"] == ():
        return PayloadError("invalid", "payload is not a JSON object")
    version = next((error for error in errors if error["loc"] == ("v",)), None)
    if version is not None:
        return PayloadError("bad_version", f"v: {version['msg']}, expected {SCHEMA_VERSION}")
    if _lacks_version(payload):
        return PayloadError("bad_version", f"no schema version, expected {SCHEMA_VERSION}")
    where = ".".join(str(part) for part in first["loc"])
    return PayloadError(_reason(first), f"{where}: {first['msg']} ({exc.error_count()} errors)")


def _reason(error: ErrorDetails) -> RejectReason:
    kind, loc = error["type"], error["loc"]
    if kind in _MODEL_REASONS:
        return "unknown_value" if kind == "unknown_value" else "missing_value"
    if kind in _OUT_OF_RANGE and loc and loc[-1] in TIME_FIELDS:
        return "bad_time"
    return "invalid"


def _lacks_version(payload: bytes) -> bool:
    """Whether a payload that failed validation has no ``v`` at all (a version the default
    would otherwise fill in). Only on the refusal path: parses the payload a second time."""
    try:
        document = from_json(payload)
    except ValueError:
        return False
    return isinstance(document, dict) and "v" not in document


def _check_station(topic: StationTopic, station_id: str) -> None:
    if station_id != topic.station_id:
        raise PayloadError(
            "station_mismatch", f"payload station {station_id!r} on topic of {topic.station_id!r}"
        )


def _check_sensors(topic: StationTopic, sensor_ids: Iterable[str]) -> None:
    """A station speaks only for its own sensors: ids ``<station_id>.<local id>``."""
    prefix = topic.station_id + "."
    for sensor_id in sensor_ids:
        if not sensor_id.startswith(prefix) or len(sensor_id) == len(prefix):
            raise PayloadError(
                "foreign_sensor",
                f"sensor {sensor_id!r} is not one of station {topic.station_id!r}'s",
            )
