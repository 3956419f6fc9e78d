"""One message in: decode, validate, de-duplicate, store, evaluate rules, hand alerts on.

``IngestPipeline.handle(topic, payload)`` never raises for bad input: a message it refuses goes
to the dead letters with a reason and a counter, and the next message is processed as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from ingest.dedup import Deduplicator
from ingest.metrics import IngestMetrics
from ingest.ports import AlertHandler, DeadLetterSink, ReadingSink
from ingest.registry import StationRegistry
from protocol import (
    Channel,
    PayloadError,
    StationTopic,
    TelemetryBatch,
    TopicError,
    decode_state,
    decode_telemetry,
)
from protocol.backoff import Backoff
from rules import Alert, RuleEngine

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class IngestPipeline:
    def __init__(
        self,
        *,
        engine: RuleEngine,
        alerts: AlertHandler,
        dead_letters: DeadLetterSink,
        sinks: Sequence[ReadingSink] = (),
        registry: StationRegistry | None = None,
        dedup: Deduplicator | None = None,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.sinks = tuple(sinks)
        self.registry = registry or StationRegistry()
        self.dedup = dedup or Deduplicator()
        self.metrics = metrics or IngestMetrics()
        self.clock = clock
        self.sleep = sleep
        self.evaluating = asyncio.Lock()
        """Held while a batch is evaluated and its alerts delivered (snapshots wait for it)."""
        self.engine.set_locator(self.registry.location)
        self.metrics.watch_engine(self.engine)

    async def handle(self, topic: str, payload: bytes) -> None:
        received_at = self.clock()
        try:
            station_topic = StationTopic.parse(topic)
        except TopicError as exc:
            self._reject(topic, payload, PayloadError("bad_topic", str(exc)), received_at)
            return
        self.metrics.messages.labels(station_topic.channel.value).inc()
        try:
            if station_topic.channel is Channel.STATE:
                state = decode_state(station_topic, payload)
                self.registry.update(state)
                if state.status == "online":
                    self.engine.note_birth(state.station_id, state.ts)
                return
            batch = decode_telemetry(station_topic, payload)
        except PayloadError as exc:
            self._reject(topic, payload, exc, received_at)
            return
        await self._accept(batch, received_at)

    async def _accept(self, batch: TelemetryBatch, received_at: datetime) -> None:
        if not self.dedup.first_time(batch.station_id, batch.boot_epoch, batch.seq):
            self.metrics.duplicates.inc()
            return
        for sink in self.sinks:
            await sink.write_batch(batch, received_at)
        self.metrics.batches.inc()
        self.metrics.readings.inc(len(batch.readings))
        unregistered = sum(1 for r in batch.readings if self.registry.sensor(r.sensor_id) is None)
        if unregistered:
            self.metrics.unregistered.inc(unregistered)
        async with self.evaluating:
            await self._deliver_all(
                self.engine.process(batch.station_id, batch.readings, batch.sent_at), received_at
            )

    async def drain(self, received_at: datetime | None = None) -> None:
        """Evaluate what the reorder buffers still hold (end of a backtest, clean shutdown)."""
        async with self.evaluating:
            await self._deliver_all(self.engine.drain(), received_at or self.clock())

    async def _deliver_all(self, alerts: Sequence[Alert], received_at: datetime) -> None:
        for alert in alerts:
            self.metrics.alerts.labels(alert.rule_id, alert.state).inc()
            await self._deliver(alert, received_at)

    async def _deliver(self, alert: Alert, received_at: datetime) -> None:
        """Hand an alert on. The engine has moved on, so a transient failure (the case store is
        down) is retried until it succeeds: ingest stalls and the broker queues behind it.
        An alert the handler refuses (``ValueError``) is counted and kept as a dead letter."""
        backoff = Backoff(initial=0.2, maximum=10.0)
        sensor = self.registry.sensor(alert.sensor_id)
        while True:
            try:
                await self.alerts.handle_alert(alert, sensor, received_at)
                return
            except ValueError as exc:
                self.metrics.alerts_refused.inc()
                log.error("alert refused by the center: %s (%s)", exc, alert)
                self.dead_letters.write(
                    "alert", repr(alert).encode(), "alert_refused", str(exc), received_at
                )
                return
            except Exception as exc:
                self.metrics.alert_retries.inc()
                delay = backoff.next_delay()
                log.warning("alert delivery failed (%s); retrying in %.1fs", exc, delay)
                await self.sleep(delay)

    def _reject(
        self, topic: str, payload: bytes, error: PayloadError, received_at: datetime
    ) -> None:
        self.metrics.rejected.labels(error.reason).inc()
        log.warning("rejected message on %s: %s", topic, error)
        self.dead_letters.write(topic, payload, error.reason, error.detail, received_at)
