"""Small interfaces ingest talks to; the composition root plugs implementations in."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from protocol import BatchView, ResendRequest, SensorInfo
from rules import Alert


class ReadingSink(Protocol):
    """Where accepted batches are stored (time-series store, recorder). ``write_batch`` may
    buffer; a sink that does has ``async flush()``, which ingest calls before it acknowledges.
    Errors: ``ingest.errors.TransientSinkError`` (retried), ``PermanentSinkError`` (refused for
    good: the batches are dead-lettered)."""

    async def write_batch(self, batch: BatchView, received_at: datetime) -> None: ...


class AlertHandler(Protocol):
    """Who acts on alerts: the center turns them into cases."""

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None: ...


class DeadLetterSink(Protocol):
    """Keeps every rejected message and refused alert, with its reason, for inspection and
    replay. Each call returns once the letter is kept, or raises an ``OSError`` (ingest then
    stops acknowledging and retries: a letter is never dropped)."""

    async def put(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None: ...

    async def put_alert(
        self, alert: Alert, reason: str, detail: str, received_at: datetime
    ) -> None: ...


class CommandPublisher(Protocol):
    """Sends commands to stations, each on its station's ``cmd`` topic at QoS 1. Returns once
    the MQTT client has the message (it delivers it, also after a reconnect); raises
    ``ConnectionError`` when it cannot take it."""

    async def send_command(self, request: ResendRequest) -> None: ...
