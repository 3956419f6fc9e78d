"""The MQTT session of ingest: persistent session, QoS 1 subscriptions, reconnect with backoff."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from ingest.pipeline import IngestPipeline
from protocol import Channel, StationTopic
from protocol.backoff import Backoff

log = logging.getLogger(__name__)


class IngestConsumer:
    def __init__(self, pipeline: IngestPipeline, *, host: str, port: int, client_id: str) -> None:
        self.pipeline = pipeline
        self.host, self.port, self.client_id = host, port, client_id
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Consume until cancelled, reconnecting on broker errors."""
        backoff = Backoff()
        while True:
            try:
                await self._session(backoff)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                log.warning("ingest MQTT session lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _session(self, backoff: Backoff) -> None:
        async with aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, clean_session=False
        ) as client:
            for channel in (Channel.STATE, Channel.TELEMETRY):
                await client.subscribe(StationTopic.subscription(channel), qos=1)
            backoff.reset()
            self.connected.set()
            log.info("ingest subscribed at %s:%s", self.host, self.port)
            async for message in client.messages:
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
                await self.pipeline.handle(message.topic.value, data)
