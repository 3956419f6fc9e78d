"""Ingest's MQTT session against the real Mosquitto (broker_config/dev.conf) and, for what a
real broker will not do on demand (go silent, refuse), a scripted one on a loopback port."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citysense.broker import MosquittoBroker
from ingest.mqttwire import (
    CONNECT,
    PINGREQ,
    PUBACK,
    Delivery,
    PacketSplitter,
    Will,
    packet,
    publish_packet,
)
from ingest.session import MqttSession
from tests.waiting import until

TOPIC = "citysense/v1/stations/{}/telemetry"


class _Inbox:
    def __init__(self) -> None:
        self.items: list[Delivery] = []

    def __call__(self, deliveries: list[Delivery]) -> None:
        self.items += deliveries


def _session(
    host: str, port: int, inbox: _Inbox, client_id: str | None = None, **options: object
) -> MqttSession:
    return MqttSession(
        host,
        port,
        client_id or f"session-{uuid.uuid4().hex[:8]}",
        subscriptions=[(TOPIC.format("+"), 1)],
        deliver=inbox,
        **options,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def _running(session: MqttSession) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(session.run())
    try:
        await until(lambda: session.up)
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await session.close()


def _publish(broker: MosquittoBroker, payloads: list[bytes], station: str = "st-1") -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for info in [client.publish(TOPIC.format(station), p, qos=1) for p in payloads]:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _retained(broker: MosquittoBroker, topic: str) -> bytes | None:
    got: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        for _ in range(100):
            if got:
                break
            time.sleep(0.02)
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0] if got else None


async def test_what_is_not_acknowledged_comes_again_on_the_next_connection_and_only_that(
    mosquitto: MosquittoBroker,
) -> None:
    inbox = _Inbox()
    session = _session(mosquitto.host, mosquitto.port, inbox)
    async with _running(session):
        await asyncio.to_thread(_publish, mosquitto, [b"%d" % i for i in range(20)])
        await until(lambda: len(inbox.items) == 20)
        first = list(inbox.items)
        assert [d.payload for d in first] == [b"%d" % i for i in range(20)]
        assert session.ack(first[:5]) == 5
        await asyncio.sleep(0.2)  # the PUBACKs reach the broker before the connection is cut
        inbox.items.clear()
        connection = session._connection
        assert connection is not None
        connection.abort()  # lost, not closed: the session reconnects on its own
        await until(lambda: len(inbox.items) == 15)
        again = list(inbox.items)
        assert [d.payload for d in again] == [b"%d" % i for i in range(5, 20)]
        assert {d.session for d in again} == {first[0].session + 1}
        # packet ids of the old connection are not acknowledged on the new one
        assert session.ack(first[5:]) == 0
        assert session.ack(again) == 15
        await asyncio.sleep(0.2)
        inbox.items.clear()
        session._connection.abort()  # type: ignore[union-attr]
        await until(lambda: session.session == first[0].session + 2 and session.up)
        await asyncio.sleep(0.3)
        assert inbox.items == []


async def test_a_publish_made_while_the_broker_is_away_is_sent_and_confirmed_when_it_returns() -> (
    None
):
    inbox = _Inbox()
    with MosquittoBroker() as broker:
        session = _session(broker.host, broker.port, inbox, min_delay_s=0.1, max_delay_s=0.2)
        async with _running(session):
            broker.stop()
            await until(lambda: not session.up)
            confirmed = session.publish(TOPIC.format("st-2"), b"while away")
            assert confirmed is not None
            await asyncio.sleep(0.3)
            assert not confirmed.done()
            broker.start()  # on the same port
            await asyncio.wait_for(confirmed, 10)
            assert session.unconfirmed == 0
            await until(lambda: session.up)


async def test_a_clean_close_leaves_its_last_word_and_a_lost_connection_its_will(
    mosquitto: MosquittoBroker,
) -> None:
    topic = f"test/presence/{uuid.uuid4().hex[:6]}"
    will = Will(topic, b"will", qos=1, retain=True)
    session = _session(mosquitto.host, mosquitto.port, _Inbox(), will=will)
    async with _running(session):
        pass  # _running closes it
    assert session.up is False
    session = _session(mosquitto.host, mosquitto.port, _Inbox(), will=will)
    task = asyncio.create_task(session.run())
    await until(lambda: session.up)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await session.close((topic, b"bye"))
    assert await asyncio.to_thread(_retained, mosquitto, topic) == b"bye"
    session = _session(mosquitto.host, mosquitto.port, _Inbox(), will=will, min_delay_s=60)
    async with _running(session):
        session._connection.abort()  # type: ignore[union-attr]
        await until(lambda: not session.up)
        assert await asyncio.to_thread(_retained, mosquitto, topic) == b"will"


async def test_unconfirmed_publishes_fail_when_the_session_closes(
    mosquitto: MosquittoBroker,
) -> None:
    session = _session(mosquitto.host, mosquitto.port, _Inbox())
    waiting = session.publish(TOPIC.format("st-3"), b"never connected")
    assert waiting is not None
    await session.close()
    with pytest.raises(ConnectionError, match="closed"):
        await waiting


class _ScriptedBroker:
    """Accepts connections and answers CONNECT with ``connack`` and SUBSCRIBE with a SUBACK
    granting QoS 1; records the packet types it receives; answers no PINGREQ."""

    def __init__(
        self, connack: bytes = b"\x00\x00", behind_connack: bytes = b"", suback: bool = True
    ) -> None:
        self.connack = connack
        self.suback = suback
        self.behind_connack = behind_connack
        """Written in the same write as the CONNACK (a session's queued messages)."""
        self.pubacks: list[int] = []
        self.connections = 0
        self.received: list[int] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[object]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.handlers)  # each ends at the end of its stream
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        kinds: list[int] = []

        def control(kind: int, _flags: int, body: bytes) -> None:
            kinds.append(kind)
            if kind == PUBACK:
                self.pubacks.append(int.from_bytes(bytes(body), "big"))

        splitter = PacketSplitter(control)
        while data := await reader.read(65_536):
            splitter.feed(data)
            for kind in kinds:
                self.received.append(kind)
                if kind == CONNECT:
                    writer.write(packet(2, 0, self.connack) + self.behind_connack)
                elif kind == 8 and self.suback:  # SUBSCRIBE: grant QoS 1 to the one filter
                    writer.write(packet(9, 0, b"\x00\x01\x01"))
            kinds.clear()
        writer.close()


async def _up_after_three_connections(scripted: _ScriptedBroker) -> bool:
    """Run a session (fast backoff) against ``scripted`` until it has connected three times
    (within 5 s, else the test fails); whether it was up then."""
    port = await scripted.start()
    session = _session("127.0.0.1", port, _Inbox(), min_delay_s=0.1, max_delay_s=0.2)
    task = asyncio.create_task(session.run())
    try:
        await until(lambda: scripted.connections >= 3, within_s=5)
        return session.up
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await session.close()
        await scripted.stop()


async def test_a_broker_that_goes_silent_is_left_and_connected_to_again() -> None:
    scripted = _ScriptedBroker()
    port = await scripted.start()
    session = _session("127.0.0.1", port, _Inbox(), keepalive_s=1, min_delay_s=0.1)
    try:
        async with _running(session):
            await until(lambda: scripted.connections >= 2, within_s=5)
            assert PINGREQ in scripted.received
    finally:
        await scripted.stop()


async def test_a_refused_connection_is_tried_again_with_backoff() -> None:
    scripted = _ScriptedBroker(connack=b"\x00\x05")  # not authorized
    assert not await _up_after_three_connections(scripted)


async def test_messages_right_behind_the_connack_can_be_acknowledged_at_once() -> None:
    """A resumed session's queue comes in the CONNACK's segment, before the session has read
    the CONNACK: acknowledging those must still reach the broker, or each one holds a slot of
    the broker's in-flight window until the next reconnect."""
    queued = publish_packet(TOPIC.format("st-4"), b"queued", qos=1, mid=7)
    scripted = _ScriptedBroker(behind_connack=queued)
    port = await scripted.start()
    acked: list[int] = []

    def ack_at_once(deliveries: list[Delivery]) -> None:
        acked.append(session.ack(deliveries))

    session = MqttSession(
        "127.0.0.1",
        port,
        "session-behind",
        subscriptions=[(TOPIC.format("+"), 1)],
        deliver=ack_at_once,
    )
    try:
        async with _running(session):
            await until(lambda: scripted.pubacks == [7], within_s=5)
        assert acked == [1]
    finally:
        await scripted.stop()


async def test_an_idle_session_outlives_its_keepalive(mosquitto: MosquittoBroker) -> None:
    """Mosquitto drops a client silent for 1.5 keepalives: the pings keep an idle session up."""
    session = _session(mosquitto.host, mosquitto.port, _Inbox(), keepalive_s=1)
    async with _running(session):
        number = session.session
        await asyncio.sleep(4)
        assert session.up
        assert session.session == number  # never reconnected


async def test_a_broker_that_sends_garbage_is_left_and_connected_to_again() -> None:
    scripted = _ScriptedBroker(behind_connack=b"\xf0\x00")  # packet type 15: not in MQTT 3.1.1
    await _up_after_three_connections(scripted)


async def test_a_session_cancelled_as_its_suback_arrives_stops() -> None:
    """Python 3.11's ``asyncio.wait_for`` returns the result when it is cancelled in the same
    step as the awaited future completes: the session swallowed the cancellation and ran on,
    and whoever waited for it to stop (the consumer's shutdown, the bench) hung."""
    scripted = _ScriptedBroker(suback=False)
    port = await scripted.start()
    session = _session("127.0.0.1", port, _Inbox())
    task = asyncio.create_task(session.run())
    try:
        await until(lambda: session._connection is not None, within_s=5)  # past the CONNACK
        connection = session._connection
        assert connection is not None
        await asyncio.sleep(0.05)  # the session waits for the SUBACK now
        connection.suback.set_result(b"\x00\x01\x01")  # it arrives ...
        task.cancel()  # ... in the same step as the stop
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done == {task}, "the session did not stop"
        assert task.cancelled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await session.close()
        await scripted.stop()
