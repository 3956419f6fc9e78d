"""The edge agent that runs on a shared IoT base station: drivers, outbox, MQTT session."""

from edge.agent import EdgeAgent, utc_now
from edge.core import EdgeCore, EdgeStats
from edge.driver import SensorDriver
from edge.outbox import MemoryOutbox, SealedBatch
from edge.settings import EdgeSettings
from protocol.backoff import Backoff

__all__ = [
    "Backoff",
    "EdgeAgent",
    "EdgeCore",
    "EdgeSettings",
    "EdgeStats",
    "MemoryOutbox",
    "SealedBatch",
    "SensorDriver",
    "utc_now",
]
