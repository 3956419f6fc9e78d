"""Small interfaces ingest talks to; the composition root plugs implementations in."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from protocol import SensorInfo, TelemetryBatch
from rules import Alert


class ReadingSink(Protocol):
    """Where accepted batches are stored (time-series store, recorder)."""

    async def write_batch(self, batch: TelemetryBatch, received_at: datetime) -> None: ...


class AlertHandler(Protocol):
    """Who acts on alerts: the center turns them into cases."""

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None: ...


class DeadLetterSink(Protocol):
    """Keeps every rejected message, with its reason, for inspection and replay."""

    def write(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None: ...
