"""QoS 1 publishes on ingest's own MQTT session that say when the broker has them (PUBACK).

The node's other outgoing traffic (the center's case events, ``center.delivery.mqtt``) goes out
on this session: one connection and one account per node (the production broker ties a client
id to its username, so a second connection with the same account would take this one's place).

``publish`` runs on the event loop: paho queues the packet under its locks and its network
thread sends it. paho reports the PUBACK on that thread (``on_publish``); it is handed to the
loop with ``call_soon_threadsafe``, so it runs after ``publish`` has registered the future. A
message whose session ends before its PUBACK stays with paho, which sends it again after the
reconnect; the future only fails when the consumer stops (``detach``).
"""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


class ConfirmedPublisher:
    """Attached to the consumer's paho client while it runs."""

    def __init__(self, connected: asyncio.Event) -> None:
        self._connected = connected
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None and self._connected.is_set()

    async def until_connected(self) -> None:
        await self._connected.wait()

    def attach(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client, self._loop = client, loop
        client.on_publish = self._on_publish

    def detach(self) -> None:
        """The client is going away: whatever it has not confirmed fails."""
        self._client = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError("the MQTT session closed"))

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[None]:
        """Publish at QoS 1; the future resolves once the broker acknowledged."""
        client, loop = self._client, self._loop
        if client is None or loop is None:
            raise ConnectionError("no MQTT session")
        info = client.publish(topic, payload, qos=1)
        if info.rc not in _QUEUED:
            raise ConnectionError(f"publish on {topic} not queued: {mqtt.error_string(info.rc)}")
        future: asyncio.Future[None] = loop.create_future()
        self._pending[info.mid] = future
        return future

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, *_: object) -> None:
        loop = self._loop  # paho's thread
        if loop is not None:
            loop.call_soon_threadsafe(self._confirmed, mid)

    def _confirmed(self, mid: int) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)
