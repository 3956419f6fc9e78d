"""QoS 1 publishes on ingest's own MQTT session that say when the broker has them (PUBACK).

The node's other outgoing traffic (the center's case events, ``center.delivery.mqtt``) goes out
on this session: one connection and one account per node (the production broker ties a client
id to its username, so a second connection with the same account would take this one's place).

A message whose connection ends before its PUBACK stays with the session, which sends it again
after the reconnect; the future only fails when the consumer stops (``detach``).
"""

from __future__ import annotations

import asyncio

from ingest.session import MqttSession


class ConfirmedPublisher:
    """Attached to the consumer's session while it runs."""

    def __init__(self, connected: asyncio.Event) -> None:
        self._connected = connected
        self._session: MqttSession | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None and self._connected.is_set()

    async def until_connected(self) -> None:
        await self._connected.wait()

    def attach(self, session: MqttSession) -> None:
        self._session = session

    def detach(self) -> None:
        """The session has closed (it failed whatever it had not confirmed)."""
        self._session = None

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[None]:
        """Publish at QoS 1; the future resolves once the broker acknowledged."""
        session = self._session
        if session is None:
            raise ConnectionError("no MQTT session")
        future = session.publish(topic, payload)
        assert future is not None  # confirm=True
        return future
