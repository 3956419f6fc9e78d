"""The edge agent that runs on a shared IoT base station: drivers, outbox, MQTT session."""

from edge.agent import EdgeAgent, EdgeStats, utc_now
from edge.driver import SensorDriver
from edge.outbox import MemoryOutbox, SealedBatch
from edge.settings import EdgeSettings
from protocol.backoff import Backoff

__all__ = [
    "Backoff",
    "EdgeAgent",
    "EdgeSettings",
    "EdgeStats",
    "MemoryOutbox",
    "SealedBatch",
    "SensorDriver",
    "utc_now",
]
