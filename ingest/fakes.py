"""In-memory fakes of ingest's ports, shipped for tests and examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from protocol import SensorInfo, TelemetryBatch
from rules import Alert


@dataclass
class MemorySink:
    batches: list[TelemetryBatch] = field(default_factory=list)

    async def write_batch(self, batch: TelemetryBatch, received_at: datetime) -> None:
        self.batches.append(batch)


@dataclass
class MemoryAlerts:
    alerts: list[tuple[Alert, SensorInfo | None]] = field(default_factory=list)

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None:
        self.alerts.append((alert, sensor))


@dataclass
class MemoryDeadLetters:
    letters: list[tuple[str, bytes, str, str]] = field(default_factory=list)

    def write(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        self.letters.append((topic, payload, reason, detail))
