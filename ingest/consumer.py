"""The MQTT session of ingest: persistent session, QoS 1, acknowledged after the unit of work.

The session (``ingest.session``, on the event loop) acknowledges a message (PUBACK) only after
the pipeline has handled it and committed its group (sinks flushed, journal durable). The broker
sends at most ``max_inflight_messages`` (broker_config/) unacknowledged messages to one client,
so that is ingest's bound on work in flight; while a store is down the pipeline stalls, nothing
is acknowledged, and the broker queues the rest for the persistent session within its own
limits (``max_queued_messages``). A crash loses nothing that was acknowledged; what was not is
sent again and recognised by the de-duplication.

The client was chosen by measuring: paho with manual acknowledgement, gmqtt and this session
draining the same queue (``make bench`` runs the paho and session baselines every time,
``drain_paho_b*`` and ``drain_session_b*``; docs/benchmarks.md, "Choices measured"); aiomqtt
2.x cannot acknowledge manually.

The same session publishes ingest's re-send requests to stations (``cmd``, QoS 1): every
``RESEND_TICK_S`` (or half the tracker's ``resend_after`` when shorter) while connected, the
pipeline asks for the batches missing for longer than that; and the node's case events
(``publisher``, confirmed by PUBACK: ``ingest.confirmed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Literal

from ingest.commands import SessionCommands
from ingest.confirmed import ConfirmedPublisher
from ingest.mqttwire import Delivery, Will
from ingest.pipeline import READ_CHANNELS, IngestPipeline
from ingest.session import MqttSession
from protocol import INGEST_STATE_TOPIC, IngestState, StationTopic, encode
from protocol.connection import MqttAuth

log = logging.getLogger(__name__)

MAX_GROUP = 500
"""At most this many messages in one commit (and as many handled ahead of it). A commit (sink
flush, journal fsync) costs about the same for 5 messages as for 500: the window is what makes small
messages affordable. Half the broker's window (``max_inflight_messages`` 1,000 in
broker_config/), so the next group can arrive and be handled while one commits: with groups
as large as the window the broker sent nothing more until the commit was acknowledged
(100-reading messages, 1,000,000 readings: 130–137k readings/s with 1,000, 147k with 400)."""
RESEND_TICK_S = 1.0
KEEPALIVE_S = 30
PRESENCE_TIMEOUT_S = 2.0


class _Arrivals:
    """Messages from the session to the consumer, on the event loop: the session adds what
    each read from the socket completed, the consumer takes up to a group."""

    def __init__(self) -> None:
        self._items: deque[Delivery] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, items: list[Delivery]) -> None:
        self._items.extend(items)
        self._ready.set()

    async def take(self, most: int) -> list[Delivery]:
        """What has arrived, oldest first, at most ``most``; waits for at least one."""
        items = self._items
        while not items:
            self._ready.clear()
            await self._ready.wait()
        if len(items) <= most:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(most)]


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
        self.acknowledged = 0
        """Messages committed and acknowledged (or committed, for QoS 0) since start."""

    async def run(self) -> None:
        """Consume until cancelled; the session reconnects with backoff on its own."""
        queue = _Arrivals()
        session = MqttSession(
            self.host,
            self.port,
            self.client_id,
            subscriptions=[(StationTopic.subscription(c), 1) for c in sorted(READ_CHANNELS)],
            deliver=queue.put,
            auth=self.auth,
            will=Will(INGEST_STATE_TOPIC, _presence("offline"), qos=1, retain=True),
            keepalive_s=KEEPALIVE_S,
            on_up=lambda: self._up(session),
            on_down=self._down,
        )
        self.publisher.attach(session)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(session.run(), name="ingest-mqtt")
                group.create_task(self._consume(session, queue), name="ingest-consume")
                commands = SessionCommands(session)
                group.create_task(self._ask_for_gaps(commands), name="ingest-resend")
        finally:
            self.connected.clear()
            # a clean stop says so itself (the broker sends no will for it)
            await session.close((INGEST_STATE_TOPIC, _presence("offline")), PRESENCE_TIMEOUT_S)
            self.publisher.detach()

    def _up(self, session: MqttSession) -> None:
        session.publish(INGEST_STATE_TOPIC, _presence("online"), retain=True, confirm=False)
        self.connected.set()
        log.info("ingest subscribed at %s:%s", self.host, self.port)

    def _down(self) -> None:
        self.connected.clear()

    async def _consume(self, session: MqttSession, queue: _Arrivals) -> None:
        """Handle what has arrived while the previous commit runs; when it is done, one commit
        covers everything handled meanwhile (group commit), and those messages are
        acknowledged once it is done. So a commit is never waited for while there is room, and
        a steady stream pays one commit per commit's duration, not one per small group. Handled
        and not yet committing is bounded by ``max_group`` (when it is full, handling waits for
        the commit), committing by ``max_group`` too. Commits run one at a time, in order, so
        acknowledgements follow the order of the messages."""
        metrics = self.pipeline.metrics
        group: list[Delivery] = []  # being handled
        handled: list[Delivery] = []  # handled, for the next commit
        committing: list[Delivery] = []  # in the commit running now
        work, room = asyncio.Event(), asyncio.Event()  # handled grew; the committer took it
        # received and not yet acknowledged, read when scraped (also while a commit stalls)
        metrics.in_flight.set_function(
            lambda: len(group) + len(queue) + len(handled) + len(committing)
        )

        async def commit_loop() -> None:
            nonlocal handled, committing
            while True:
                while not handled:
                    work.clear()
                    await work.wait()
                committing, handled = handled, []
                room.set()
                await self.pipeline.commit()
                acked = session.ack(committing)
                metrics.acked.inc(acked)
                self.acknowledged += len(committing)
                committing = []

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(commit_loop(), name="ingest-commit")
            while True:
                while len(handled) >= self.max_group:  # the next commit is full: wait for it
                    room.clear()
                    await room.wait()
                group = await queue.take(self.max_group - len(handled))
                await self.pipeline.handle_messages([(d.topic, d.payload) for d in group])
                handled += group
                group = []
                work.set()

    async def _ask_for_gaps(self, commands: SessionCommands) -> None:
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
