"""In-memory fakes of ingest's ports, shipped for tests and examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ingest.dead_letters import DeadLetterError
from protocol import BatchView, ResendRequest, SensorInfo
from rules import Alert


@dataclass
class MemorySink:
    batches: list[BatchView] = field(default_factory=list)

    async def write_batch(self, batch: BatchView, received_at: datetime) -> None:
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
    """Dead letters in a list. ``fail_with`` set: every write raises it (a full disk)."""

    letters: list[tuple[str, bytes, str, str]] = field(default_factory=list)
    alerts: list[tuple[Alert, str, str]] = field(default_factory=list)
    fail_with: DeadLetterError | None = None

    def write(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.letters.append((topic, payload, reason, detail))

    def write_alert(self, alert: Alert, reason: str, detail: str, received_at: datetime) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.alerts.append((alert, reason, detail))

    async def put(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        self.write(topic, payload, reason, detail, received_at)

    async def put_alert(
        self, alert: Alert, reason: str, detail: str, received_at: datetime
    ) -> None:
        self.write_alert(alert, reason, detail, received_at)

    async def flush(self) -> None:
        return None


@dataclass
class MemoryCommands:
    """Commands to stations in a list (a ``CommandPublisher``)."""

    sent: list[ResendRequest] = field(default_factory=list)

    async def send_command(self, request: ResendRequest) -> None:
        self.sent.append(request)
