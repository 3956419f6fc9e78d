"""The one wire contract: MQTT topics, payload models, codecs. Pure: no I/O."""

from protocol.codec import (
    REJECT_REASONS,
    PayloadError,
    RejectReason,
    decode_state,
    decode_telemetry,
    encode,
)
from protocol.gbt30428 import CaseClass, case_class
from protocol.models import (
    KIND_VALUES,
    MAX_READINGS_PER_BATCH,
    PRIMARY_VALUE,
    SCHEMA_VERSION,
    TIME_END,
    TIME_MIN,
    Reading,
    SensorInfo,
    SensorKind,
    StationState,
    TelemetryBatch,
    kind_values,
)
from protocol.topics import TOPIC_ROOT, Channel, StationTopic, TopicError

__all__ = [
    "KIND_VALUES",
    "MAX_READINGS_PER_BATCH",
    "PRIMARY_VALUE",
    "REJECT_REASONS",
    "SCHEMA_VERSION",
    "TIME_END",
    "TIME_MIN",
    "TOPIC_ROOT",
    "CaseClass",
    "Channel",
    "PayloadError",
    "Reading",
    "RejectReason",
    "SensorInfo",
    "SensorKind",
    "StationState",
    "StationTopic",
    "TelemetryBatch",
    "TopicError",
    "case_class",
    "decode_state",
    "decode_telemetry",
    "encode",
    "kind_values",
]
