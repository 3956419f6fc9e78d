"""MQTT topic names.

Every topic carries the station id as its own level, so a broker ACL can pin a station's
credentials to ``citysense/v1/stations/<its id>/#``::

    citysense/v1/stations/{station_id}/telemetry   batches of readings, QoS 1
    citysense/v1/stations/{station_id}/state       retained birth/death (online/offline)
    citysense/v1/stations/{station_id}/gaps        readings the outbox gave up (counted losses)
    citysense/v1/stations/{station_id}/ack         the station's answers to commands
    citysense/v1/stations/{station_id}/cmd         commands to the station (re-send a range)
    citysense/v1/stations/{station_id}/config      retained desired config of the station

The first four are published by the station, ``cmd`` and ``config`` only by the center.
The center publishes every case event on one topic of its own::

    citysense/v1/center/case-events                 CaseEvent (center.schemas), QoS 1, id order

``v1`` is the topic-root version: it changes only when the topic layout changes. Payload
schema versions travel inside the payloads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

TOPIC_ROOT = "citysense/v1"
INGEST_STATE_TOPIC = f"{TOPIC_ROOT}/ingest/state"
"""Retained ``IngestState``: ingest's presence (its last will says offline). Stations read it
and hold their data while ingest is away, rather than fill the broker's queue."""
CASE_EVENTS_TOPIC = f"{TOPIC_ROOT}/center/case-events"
"""Every case event (the center's ``CaseEvent``), in id order, QoS 1, not retained: the same
JSON the live stream and webhooks carry."""
STATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Published in the AsyncAPI document and used by pydantic (Rust regex: ``$`` is the end of the
text). Python's ``re`` lets ``$`` match before a final newline, so Python code uses
``fullmatch``."""
_STATION_ID = re.compile(STATION_ID_PATTERN)


class TopicError(ValueError):
    """A topic that is not part of the citysense contract."""


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    STATE = "state"
    GAPS = "gaps"
    ACK = "ack"
    COMMAND = "cmd"
    CONFIG = "config"


@dataclass(frozen=True, slots=True)
class StationTopic:
    """A station topic; validates itself when built."""

    station_id: str
    channel: Channel

    def __post_init__(self) -> None:
        if not _STATION_ID.fullmatch(self.station_id):
            raise TopicError(f"invalid station id {self.station_id!r}")

    def __str__(self) -> str:
        return f"{TOPIC_ROOT}/stations/{self.station_id}/{self.channel.value}"

    @classmethod
    def parse(cls, topic: str) -> StationTopic:
        prefix = f"{TOPIC_ROOT}/stations/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is outside {prefix}")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 2:
            raise TopicError(f"topic {topic!r} is not {prefix}<station>/<channel>")
        station_id, channel = parts
        try:
            parsed_channel = Channel(channel)
        except ValueError:
            raise TopicError(f"unknown channel {channel!r} in topic {topic!r}") from None
        return cls(station_id, parsed_channel)

    @staticmethod
    def subscription(channel: Channel) -> str:
        """Wildcard filter for one channel of every station."""
        return f"{TOPIC_ROOT}/stations/+/{channel.value}"
