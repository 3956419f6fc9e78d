"""The MQTT session of ingest: persistent session, QoS 1, acknowledged after the unit of work.

paho runs the session on its own thread with manual acknowledgement: a message is acknowledged
(PUBACK) only after the pipeline has handled it and committed its group (sinks flushed, journal
durable). The broker sends at most ``max_inflight_messages`` (broker_config/) unacknowledged
messages to one client, so that is ingest's bound on work in flight; while a store is down the
pipeline stalls, nothing is acknowledged, and the broker queues the rest for the persistent
session within its own limits (``max_queued_messages``). A crash loses nothing that was
acknowledged; what was not is sent again and recognised by the de-duplication.

paho was measured against aiomqtt on this path (``make bench``: the do-nothing paho subscriber
and ingest end to end); aiomqtt 2.x cannot acknowledge manually.

The same client publishes ingest's re-send requests to stations (``cmd``, QoS 1): every
``RESEND_TICK_S`` (or half the tracker's ``resend_after`` when shorter) while connected, the
pipeline asks for the batches missing for longer than that; and the node's case events
(``publisher``, confirmed by PUBACK: ``ingest.confirmed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from ingest.commands import PahoCommands
from ingest.confirmed import ConfirmedPublisher
from ingest.pipeline import READ_CHANNELS, IngestPipeline
from protocol import INGEST_STATE_TOPIC, IngestState, StationTopic, encode
from protocol.connection import MqttAuth

log = logging.getLogger(__name__)

MAX_GROUP = 500
"""Messages handled before one commit and their acknowledgements. A commit (sink flush,
journal fsync) costs about the same for 5 messages as for 500: the window is what makes small
messages affordable. Half the broker's window (``max_inflight_messages`` 1,000 in
broker_config/), so the next group can arrive and be handled while one commits: with groups
as large as the window the broker sent nothing more until the commit was acknowledged
(100-reading messages, 1,000,000 readings: 130–137k readings/s with 1,000, 147k with 400)."""
RESEND_TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class _Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int
    """The connection it came on: after a reconnect the broker sends unacknowledged messages
    again, and a packet id from an old connection must not be acknowledged on the new one."""


PRESENCE_TIMEOUT_S = 2.0


class _Arrivals:
    """Messages from paho's thread to the event loop. paho appends to a deque (thread-safe);
    the loop is woken only when the deque was empty, not once per message (a wake-up is a
    write to the loop's self-pipe and a callback: with 1-reading messages, a tenth of the
    event loop's time went to them)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[_Delivery] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Delivery) -> None:
        """From paho's thread."""
        self._items.append(item)
        if len(self._items) == 1:  # was empty: the loop may be waiting
            self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self, most: int) -> list[_Delivery]:
        """What has arrived, oldest first, at most ``most``; waits for at least one."""
        items = self._items
        while not items:
            self._ready.clear()
            if items:  # arrived between the check and the clear: its wake-up may be spent
                break
            await self._ready.wait()
        return [items.popleft() for _ in range(min(most, len(items)))]


def _presence(status: Literal["online", "offline"]) -> bytes:
    """Ingest's retained presence: stations hold their data while it is offline."""
    return encode(IngestState(status=status, ts=datetime.now(UTC)))


class IngestConsumer:
    def __init__(
        self,
        pipeline: IngestPipeline,
        *,
        host: str,
        port: int,
        client_id: str,
        max_group: int = MAX_GROUP,
        auth: MqttAuth | None = None,
    ) -> None:
        self.pipeline = pipeline
        pipeline.defer_alerts = True  # handed on while the next messages are handled
        self.host, self.port, self.client_id = host, port, client_id
        self.auth = auth or MqttAuth()
        self.max_group = max_group
        self.connected = asyncio.Event()
        self.publisher = ConfirmedPublisher(self.connected)
        """QoS 1 publishes on this session that resolve on PUBACK (the center's case events)."""
        self._session = 0
        self.acknowledged = 0
        """Messages committed and acknowledged (or committed, for QoS 0) since start."""

    async def run(self) -> None:
        """Consume until cancelled; paho reconnects with backoff on its own."""
        loop = asyncio.get_running_loop()
        queue = _Arrivals(loop)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
        )
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.auth.apply_to_paho(client)
        client.will_set(INGEST_STATE_TOPIC, _presence("offline"), qos=1, retain=True)

        def on_connect(
            client: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: object
        ) -> None:
            if code.is_failure:
                log.warning("ingest MQTT connect refused: %s", code)
                return
            self._session += 1  # here, on paho's thread, before this session's first message
            for channel in sorted(READ_CHANNELS):
                client.subscribe(StationTopic.subscription(channel), qos=1)
            client.publish(INGEST_STATE_TOPIC, _presence("online"), qos=1, retain=True)
            loop.call_soon_threadsafe(self._up)

        def on_disconnect(
            _c: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: object
        ) -> None:
            log.warning("ingest MQTT session lost (%s); paho reconnects", code)
            loop.call_soon_threadsafe(self.connected.clear)

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            delivery = _Delivery(
                message.topic, bytes(message.payload), message.mid, message.qos, self._session
            )
            queue.put(delivery)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        self.publisher.attach(client, loop)
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._consume(client, queue), name="ingest-consume")
                group.create_task(self._ask_for_gaps(PahoCommands(client)), name="ingest-resend")
        finally:
            self.connected.clear()
            if client.is_connected():  # a clean stop says so itself (no will is sent for it)
                sent = client.publish(INGEST_STATE_TOPIC, _presence("offline"), qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    await asyncio.to_thread(sent.wait_for_publish, PRESENCE_TIMEOUT_S)
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            self.publisher.detach()

    def _up(self) -> None:
        self.connected.set()
        log.info("ingest subscribed at %s:%s", self.host, self.port)

    async def _consume(self, client: mqtt.Client, queue: _Arrivals) -> None:
        """Handle a group, start its commit, go on with the next group while it commits; a
        group is acknowledged once its own commit is done (commits run one at a time, in order,
        so acknowledgements follow the order of the groups)."""
        metrics = self.pipeline.metrics
        group: list[_Delivery] = []
        committing: asyncio.Queue[tuple[list[_Delivery], asyncio.Task[object]]]
        committing = asyncio.Queue(maxsize=1)  # handling runs at most one group ahead
        waiting: list[list[_Delivery]] = []
        # received and not yet acknowledged, read when scraped (also while a commit stalls)
        metrics.in_flight.set_function(
            lambda: len(group) + len(queue) + sum(len(g) for g in waiting)
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._acknowledge(client, committing, waiting), name="ingest-ack")
            while True:
                group = await queue.take(self.max_group)
                await self.pipeline.handle_messages([(d.topic, d.payload) for d in group])
                commit = asyncio.create_task(self.pipeline.commit(), name="ingest-commit")
                waiting.append(group)
                group = []
                await committing.put((waiting[-1], commit))

    async def _acknowledge(
        self,
        client: mqtt.Client,
        committing: asyncio.Queue[tuple[list[_Delivery], asyncio.Task[object]]],
        waiting: list[list[_Delivery]],
    ) -> None:
        metrics = self.pipeline.metrics
        while True:
            group, commit = await committing.get()
            try:
                await commit
            except BaseException:
                commit.cancel()
                raise
            acked = 0
            for delivery in group:
                if delivery.qos > 0 and delivery.session == self._session:
                    client.ack(delivery.mid, delivery.qos)
                    acked += 1
            waiting.remove(group)
            metrics.acked.inc(acked)
            self.acknowledged += len(group)

    async def _ask_for_gaps(self, commands: PahoCommands) -> None:
        """Publish the re-send requests that are due, while connected; never raises."""
        tick = min(RESEND_TICK_S, self.pipeline.gaps.policy.resend_after_s / 2)
        while True:
            await asyncio.sleep(tick)
            if not self.connected.is_set():
                continue
            try:
                await self.pipeline.request_resends(commands)
            except Exception:  # a bug here must not stop the consumer
                log.exception("re-send requests failed; trying again")
