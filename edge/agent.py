"""The edge agent of one base station: sample the sensors, batch, publish over MQTT.

Two tasks run side by side: sampling never stops, whatever the link does, and fills the
outbox; the MQTT session (re)connects with backoff, announces the station, and drains the
outbox at QoS 1. A reading leaves the outbox only after the broker's PUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import aiomqtt

from edge.driver import SensorDriver
from edge.outbox import MemoryOutbox
from edge.settings import EdgeSettings
from protocol import Channel, StationState, StationTopic, TelemetryBatch, encode
from protocol.backoff import Backoff

log = logging.getLogger(__name__)

GOODBYE_TIMEOUT_S = 2.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class EdgeStats:
    readings_sampled: int = 0
    batches_published: int = 0
    dropped_readings: int = 0
    """Readings evicted from a full outbox before they could be sent."""
    connects: int = 0
    link_failures: int = 0


class EdgeAgent:
    def __init__(
        self,
        station_id: str,
        driver: SensorDriver,
        *,
        host: str,
        port: int,
        sample_interval: float = 1.0,
        batch_interval: float = 1.0,
        max_batch: int = 500,
        buffer_readings: int = 100_000,
        clock: Callable[[], datetime] = utc_now,
        boot_epoch: int | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if sample_interval <= 0 or batch_interval <= 0:
            raise ValueError("sample and batch intervals must be positive")
        self.station_id = station_id
        self._state_topic = str(StationTopic(station_id, Channel.STATE))
        self._telemetry_topic = str(StationTopic(station_id, Channel.TELEMETRY))
        self._driver = driver
        self._host = host
        self._port = port
        self._sample_interval = sample_interval
        self._batch_interval = batch_interval
        self._clock = clock
        self.boot_epoch = int(self._now().timestamp()) if boot_epoch is None else boot_epoch
        self._outbox = MemoryOutbox(buffer_readings, max_batch)
        self._backoff = backoff or Backoff()
        self.stats = EdgeStats()

    @classmethod
    def from_settings(
        cls,
        settings: EdgeSettings,
        driver: SensorDriver,
        *,
        clock: Callable[[], datetime] = utc_now,
        backoff: Backoff | None = None,
    ) -> EdgeAgent:
        return cls(
            settings.station_id,
            driver,
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            sample_interval=settings.sample_interval_s,
            batch_interval=settings.batch_interval_s,
            max_batch=settings.max_batch,
            buffer_readings=settings.buffer_readings,
            clock=clock,
            backoff=backoff,
        )

    @property
    def backlog(self) -> int:
        """Readings waiting for the broker's acknowledgement."""
        return len(self._outbox)

    async def run(self) -> None:
        """Sample and publish until cancelled; on cancellation say goodbye (retained offline)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._sample_forever(), name=f"edge-{self.station_id}-sample")
            tasks.create_task(self._keep_session(), name=f"edge-{self.station_id}-session")

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the agent's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _state(self, status: Literal["online", "offline"]) -> bytes:
        sensors = list(self._driver.sensors()) if status == "online" else []
        return encode(
            StationState(
                station_id=self.station_id,
                status=status,
                boot_epoch=self.boot_epoch,
                ts=self._now(),
                sensors=sensors,
            )
        )

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            readings = self._driver.read(self._now())
            self.stats.readings_sampled += len(readings)
            evicted = self._outbox.put(readings)
            if evicted:
                self.stats.dropped_readings += evicted
                log.warning("%s: outbox full, dropped %d oldest readings", self.station_id, evicted)
            due = max(due + self._sample_interval, loop.time())
            await asyncio.sleep(due - loop.time())

    async def _keep_session(self) -> None:
        """The one place that reconnects: after any MQTT failure, back off and start over.

        Each connection runs in a task of its own: on Python 3.11 a task group whose child fails
        leaves its parent task marked as cancelling, and that mark must die with the session.
        """
        while True:
            reason = "session ended"
            session = asyncio.create_task(self._session(), name=f"edge-{self.station_id}-mqtt")
            try:
                await session
            except* aiomqtt.MqttError as failure:
                reason = "; ".join(str(error) for error in failure.exceptions)
            _raise_if_cancelling()
            self.stats.link_failures += 1
            delay = self._backoff.next_delay()
            log.warning("%s: MQTT link down (%s); retry in %.1f s", self.station_id, reason, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        will = aiomqtt.Will(self._state_topic, self._state("offline"), qos=1, retain=True)
        async with aiomqtt.Client(
            self._host, self._port, identifier=f"edge-{self.station_id}", will=will
        ) as client:
            self.stats.connects += 1
            try:
                await client.publish(self._state_topic, self._state("online"), qos=1, retain=True)
                _raise_if_cancelling()
                self._backoff.reset()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._watch_link(client), name=f"edge-{self.station_id}-link")
                    tasks.create_task(self._drain(client), name=f"edge-{self.station_id}-publish")
            except asyncio.CancelledError:
                await self._say_goodbye(client)
                raise

    async def _watch_link(self, client: aiomqtt.Client) -> None:
        """Raise ``MqttError`` as soon as the connection drops (commands from the center later)."""
        async for message in client.messages:
            log.debug("%s: ignoring message on %s", self.station_id, message.topic)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            while (sealed := self._outbox.next_batch()) is not None:
                batch = TelemetryBatch(
                    station_id=self.station_id,
                    boot_epoch=self.boot_epoch,
                    seq=sealed.seq,
                    sent_at=self._now(),
                    readings=list(sealed.readings),
                )
                await client.publish(self._telemetry_topic, encode(batch), qos=1)
                self._outbox.ack(sealed.seq)
                self.stats.batches_published += 1
                _raise_if_cancelling()
            await asyncio.sleep(self._batch_interval)

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self._state_topic,
                self._state("offline"),
                qos=1,
                retain=True,
                timeout=GOODBYE_TIMEOUT_S,
            )


def _raise_if_cancelling() -> None:
    """Honour a cancellation that was swallowed instead of raised.

    A task group that is handling a child's ``MqttError`` raises that error rather than the
    cancellation, and Python 3.11's ``asyncio.wait_for`` (inside aiomqtt) returns normally when
    a cancellation races the awaited PUBACK or CONNACK.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
