"""Case events on MQTT: each one on ``citysense/v1/center/case-events`` at QoS 1, confirmed by
the broker's PUBACK before the cursor moves past it.

One topic, not one per case: MQTT keeps one publisher's messages in order on a topic, so a
subscriber gets every event in id order (and filters by ``case.id`` if it wants one case). The
publish goes out on the node's own MQTT session (ingest's, ``ingest.confirmed``): the broker's
ACL lets the node's account write this topic (broker_config/citysense.acl).

A publish the broker has not acknowledged is not published again while it may still be on its
way (paho re-sends it after a reconnect); it is awaited again. Only a publish that failed (the
session it was sent on is gone) is repeated. Waiting is the pause between attempts here (for the
session, for the PUBACK, each up to ``timeout_s``), so those failures ask the relay to retry at
once: the first event after the broker is back goes out as the session is, not after a backoff.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from center.delivery.relay import TransientDeliveryError
from center.delivery.settings import StartAt
from center.schemas import CaseEvent
from protocol import CASE_EVENTS_TOPIC


class ConfirmedPublisher(Protocol):
    """Publishes at QoS 1; the future resolves on the broker's PUBACK (``ConnectionError``
    when the session it went out on ends first)."""

    @property
    def connected(self) -> bool: ...

    async def until_connected(self) -> None: ...

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[None]: ...


class MqttCaseEvents:
    """The MQTT topic as a delivery channel."""

    def __init__(
        self, publisher: ConfirmedPublisher, *, start: StartAt = "now", timeout_s: float = 30.0
    ) -> None:
        self._publisher = publisher
        self._start: StartAt = start
        self._timeout_s = timeout_s
        self._in_flight: tuple[int, asyncio.Future[None]] | None = None

    @property
    def name(self) -> str:
        return "mqtt:case-events"

    @property
    def start(self) -> StartAt:
        return self._start

    async def send(self, event: CaseEvent) -> None:
        future = self._pending(event.id)
        if future is None:
            await self._session()
            try:
                future = self._publisher.publish(
                    CASE_EVENTS_TOPIC, event.model_dump_json().encode()
                )
            except ConnectionError as exc:  # refused at once: the relay's backoff paces it
                raise TransientDeliveryError("publish_failed", str(exc)) from None
            self._in_flight = (event.id, future)
        try:
            async with asyncio.timeout(self._timeout_s):
                await asyncio.shield(future)
        except TimeoutError:
            raise TransientDeliveryError(
                "no_puback",
                f"the broker did not acknowledge within {self._timeout_s:g} s",
                retry_after=0.0,
            ) from None
        except ConnectionError as exc:
            raise TransientDeliveryError("broker_disconnected", str(exc), retry_after=0.0) from None
        self._in_flight = None

    async def _session(self) -> None:
        """Wait (up to ``timeout_s``) for the node's MQTT session."""
        if self._publisher.connected:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._publisher.until_connected()
        except TimeoutError:
            raise TransientDeliveryError(
                "broker_disconnected",
                f"no MQTT session for {self._timeout_s:g} s",
                retry_after=0.0,
            ) from None

    def _pending(self, event_id: int) -> asyncio.Future[None] | None:
        """The earlier publish of this event, if it may still be confirmed."""
        if self._in_flight is None:
            return None
        pending_id, future = self._in_flight
        failed = future.done() and (future.cancelled() or future.exception() is not None)
        if pending_id != event_id or failed:
            self._in_flight = None
            return None
        return future
