"""Encode and decode payloads; every failure becomes a ``PayloadError`` with a reason code."""

from __future__ import annotations

import json
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from protocol.models import StationState, TelemetryBatch
from protocol.topics import StationTopic

RejectReason = Literal[
    "bad_topic", "not_json", "bad_version", "invalid", "station_mismatch", "too_large"
]
MAX_PAYLOAD_BYTES = 1 << 20
M = TypeVar("M", bound=BaseModel)


class PayloadError(ValueError):
    """A payload citysense refuses, with a machine-readable ``reason``."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def _load(payload: bytes, known_version: int) -> object:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("not_json", str(exc)) from None
    if not isinstance(document, dict):
        raise PayloadError("invalid", "payload is not a JSON object")
    version = document.get("v")
    if version != known_version:
        raise PayloadError("bad_version", f"schema version {version!r}, expected {known_version}")
    return document


def _validate(model: type[M], document: object) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PayloadError(
            "invalid", f"{where}: {first['msg']} ({exc.error_count()} errors)"
        ) from None


def _check_station(topic: StationTopic, station_id: str) -> None:
    if station_id != topic.station_id:
        raise PayloadError(
            "station_mismatch", f"payload station {station_id!r} on topic of {topic.station_id!r}"
        )


def decode_telemetry(topic: StationTopic, payload: bytes) -> TelemetryBatch:
    batch = _validate(TelemetryBatch, _load(payload, 1))
    _check_station(topic, batch.station_id)
    return batch


def decode_state(topic: StationTopic, payload: bytes) -> StationState:
    state = _validate(StationState, _load(payload, 1))
    _check_station(topic, state.station_id)
    return state
