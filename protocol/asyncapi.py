"""Generate the AsyncAPI 3 document of the MQTT interface from the payload models.

    python -m protocol.asyncapi > docs/asyncapi.yaml

The committed document is checked against this generator by the test suite. It documents the
center's case events too: their payload is the center's ``CaseEvent`` (the one model the live
stream, webhooks and MQTT share), so this generator, and only it, imports ``center.schemas``.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from center.schemas import CaseEvent
from protocol.codec import REJECT_REASONS
from protocol.models import (
    SCHEMA_VERSION,
    CommandAck,
    ConfigAck,
    GapReport,
    IngestState,
    ResendRequest,
    StationConfig,
    StationState,
    TelemetryBatch,
)
from protocol.topics import (
    CASE_EVENTS_TOPIC,
    INGEST_STATE_TOPIC,
    STATION_ID_PATTERN,
    TOPIC_ROOT,
    Channel,
)

MQTT_BINDING_VERSION = "0.2.0"
MODELS = (
    TelemetryBatch,
    StationState,
    GapReport,
    CommandAck,
    ConfigAck,
    ResendRequest,
    StationConfig,
    IngestState,
    CaseEvent,
)


def _operation(action: str, channel: str, summary: str, *, retain: bool) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "bindings": {"mqtt": {"qos": 1, "retain": retain, "bindingVersion": MQTT_BINDING_VERSION}},
    }


def _channel(channel: Channel, message: str | tuple[str, ...], description: str) -> dict[str, Any]:
    messages = (message,) if isinstance(message, str) else message
    return {
        "address": f"{TOPIC_ROOT}/stations/{{station_id}}/{channel.value}",
        "description": description,
        "parameters": {
            "station_id": {
                "description": f"The publishing station; matches {STATION_ID_PATTERN}. "
                "Broker ACLs pin a station's credentials to its own id."
            }
        },
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
    }


def build_document() -> dict[str, Any]:
    # CaseEvent is only ever sent by the center: its schema is what it serialises to (with the
    # computed fields), the others' what ingest and the stations accept.
    _, schemas = models_json_schema(
        [(model, "serialization" if model is CaseEvent else "validation") for model in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "citysense MQTT interface",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": "Edge agents on shared IoT base stations publish sensor readings and "
            "their presence; ingest consumes them; the center publishes its case events. "
            "Generated from protocol/models.py (and center/schemas.py for CaseEvent). Ingest "
            "refuses a message with one reason of: "
            + ", ".join(REJECT_REASONS)
            + " (docs/contract.md says when); a refused message is dead-lettered and counted.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "telemetry": _channel(
                Channel.TELEMETRY, "TelemetryBatch", "Batches of readings from one station."
            ),
            "state": _channel(
                Channel.STATE,
                "StationState",
                "Retained birth (online, with the station's sensor inventory) and death "
                "(offline; also the MQTT last will).",
            ),
            "gaps": _channel(
                Channel.GAPS,
                "GapReport",
                "Readings a station's outbox gave up unsent (full, too old, damaged, or asked "
                "for after their retention): counted losses, re-sent until acknowledged.",
            ),
            "ack": _channel(
                Channel.ACK,
                ("CommandAck", "ConfigAck"),
                "A station's answers, told apart by `command`: to a command on its cmd topic "
                "(CommandAck) and to a config on its config topic (ConfigAck).",
            ),
            "cmd": _channel(
                Channel.COMMAND,
                "ResendRequest",
                "Commands to one station, published by ingest and the center only: re-send a "
                "range of batches ingest never received.",
            ),
            "config": _channel(
                Channel.CONFIG,
                "StationConfig",
                "The desired config of one station, retained, published by the center only: "
                "intervals, report-by-exception, alarm thresholds; a greater config_version "
                "replaces it.",
            ),
            "case-events": {
                "address": CASE_EVENTS_TOPIC,
                "description": "Every case event of the center (opened, updated, reopened, "
                "recovered, transition, escalated), in event id order, QoS 1, not retained; "
                "the JSON the live stream (SSE) and webhooks carry. Published from the center's "
                "event log with a cursor: a broker outage delays events, loses none; at least "
                "once (a duplicate has the same `id`). Published by the node's account only.",
                "messages": {"CaseEvent": {"$ref": "#/components/messages/CaseEvent"}},
            },
            "ingest": {
                "address": INGEST_STATE_TOPIC,
                "description": "Ingest's presence, retained: online while its session is up, "
                "offline as its last will and on a clean stop. Stations hold their data while "
                "it is offline instead of filling the broker's queue.",
                "messages": {"IngestState": {"$ref": "#/components/messages/IngestState"}},
            },
        },
        "operations": {
            "sendTelemetry": _operation(
                "send", "telemetry", "An edge agent publishes a batch.", retain=False
            ),
            "receiveTelemetry": _operation(
                "receive", "telemetry", "Ingest consumes batches.", retain=False
            ),
            "sendState": _operation(
                "send", "state", "An edge agent announces birth/death.", retain=True
            ),
            "receiveState": _operation(
                "receive", "state", "Ingest keeps the station registry.", retain=True
            ),
            "sendGaps": _operation(
                "send", "gaps", "An edge agent reports what its outbox gave up.", retain=False
            ),
            "receiveGaps": _operation(
                "receive", "gaps", "Ingest counts the loss and closes those gaps.", retain=False
            ),
            "sendAck": _operation("send", "ack", "An edge agent answers a command.", retain=False),
            "receiveAck": _operation(
                "receive",
                "ack",
                "Ingest counts the answers; `citysense config push` waits for a ConfigAck.",
                retain=False,
            ),
            "sendCommand": _operation(
                "send", "cmd", "Ingest asks a station to re-send missing batches.", retain=False
            ),
            "receiveCommand": _operation(
                "receive", "cmd", "An edge agent re-sends from its retention window.", retain=False
            ),
            "sendIngestState": _operation(
                "send", "ingest", "Ingest announces its presence.", retain=True
            ),
            "receiveIngestState": _operation(
                "receive",
                "ingest",
                "An edge agent holds its outbox while ingest is away.",
                retain=True,
            ),
            "sendCaseEvents": _operation(
                "send", "case-events", "The center publishes each case event.", retain=False
            ),
            "receiveCaseEvents": _operation(
                "receive",
                "case-events",
                "Other systems follow the center's cases (de-duplicate by `id`).",
                retain=False,
            ),
            "sendConfig": _operation(
                "send", "config", "The center publishes a station's desired config.", retain=True
            ),
            "receiveConfig": _operation(
                "receive",
                "config",
                "An edge agent applies a newer config and answers on ack.",
                retain=True,
            ),
        },
        "components": {
            "messages": {
                name: {
                    "name": name,
                    "title": name,
                    "contentType": "application/json",
                    "payload": {"$ref": f"#/components/schemas/{name}"},
                }
                for name in (model.__name__ for model in MODELS)
            },
            "schemas": schemas["$defs"],
        },
    }


def render() -> str:
    return yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    print(render(), end="")
