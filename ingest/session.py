"""Ingest's MQTT session: one persistent MQTT 3.1.1 connection on the event loop.

What ingest needs of its one connection (the production broker ties a client id to its
username, so everything goes over one): a persistent session (``clean_session`` false), its
subscriptions at QoS 1, acknowledgement when ingest says so (after a group's commit), QoS 1
publishes whose PUBACK can be awaited (case events) or not (re-send requests, presence), a will,
keepalive, TLS and a user name and password, reconnection with backoff.

Why not paho: with 1-reading messages paho's network thread cost ~25 µs of CPU a message and an
acknowledgement ~4 µs more, a third of the whole node's CPU, on a second thread that contends
for the interpreter with the pipeline; gmqtt (asyncio) ~14 µs. This session parses packets on
the event loop where the pipeline runs and acknowledges a whole group in one write
(``drain_session_b*`` beside ``drain_paho_b*`` in ``make bench``; docs/benchmarks.md).

Rules it keeps (OASIS MQTT 3.1.1):

- Acknowledgements go out in the order the messages came (4.6), and only on the connection the
  message came on: a packet id of an old connection means nothing on the new one, and the
  broker sends what was not acknowledged again after the reconnect (4.4).
- QoS 1 publishes not acknowledged when a connection ends are sent again, DUP set, in their
  order, when the next connection's CONNACK arrives (4.4), before anything new.
- A PINGREQ every half keepalive; a connection that has sent nothing for a keepalive and a half
  is taken for dead and closed (3.1.2.10).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from ingest.mqttwire import (
    CONNACK,
    CONNACK_REFUSALS,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    SUBACK,
    SUBACK_FAILURE,
    Delivery,
    PacketSplitter,
    ProtocolError,
    Will,
    connect_packet,
    pubacks,
    publish_packet,
    subscribe_packet,
)
from protocol.connection import MqttAuth

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
MIN_DELAY_S: Final = 1.0
MAX_DELAY_S: Final = 10.0


class SessionRefusedError(ConnectionError):
    """The broker refused the CONNECT or a subscription."""


class _Outgoing:
    """A QoS 1 publish waiting for its PUBACK."""

    __slots__ = ("future", "packet")

    def __init__(self, packet: bytes, future: asyncio.Future[None] | None) -> None:
        self.packet = packet
        self.future = future


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection's packets; the session decides what they mean."""

    def __init__(self, session: MqttSession, number: int) -> None:
        loop = asyncio.get_running_loop()
        self._session = session
        self._loop = loop
        self.number = number
        self.splitter = PacketSplitter(self._control)
        self.splitter.session = number
        self.connack: asyncio.Future[bytes] = loop.create_future()
        self.suback: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.last_received = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()
        try:
            deliveries = self.splitter.feed(data)
        except ProtocolError as exc:
            log.warning("ingest MQTT: %s; closing the connection", exc)
            self.abort()
            return
        if deliveries:
            self._session.deliver(deliveries)

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in (self.connack, self.suback):
            if not waiter.done():
                waiter.set_exception(ConnectionError("the connection closed"))
                waiter.exception()  # raised to whoever awaits it; not logged when no one does
        if not self.lost.done():
            self.lost.set_result(None)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _control(self, kind: int, _flags: int, body: bytes) -> None:
        if kind == PUBACK and len(body) >= 2:
            self._session.confirmed(body[0] << 8 | body[1])
        elif kind == PINGRESP:
            pass
        elif kind == CONNACK and len(body) == 2 and not self.connack.done():
            self.connack.set_result(body)
        elif kind == SUBACK and len(body) >= 3 and not self.suback.done():
            self.suback.set_result(body)
        else:
            raise ProtocolError(f"an unexpected packet (type {kind}, {len(body)} bytes)")


class MqttSession:
    """Connects, subscribes and reconnects until cancelled (``run``); ``close`` ends it."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        subscriptions: list[tuple[str, int]],
        deliver: Callable[[list[Delivery]], None],
        auth: MqttAuth | None = None,
        will: Will | None = None,
        keepalive_s: int = 30,
        on_up: Callable[[], None] = lambda: None,
        on_down: Callable[[], None] = lambda: None,
        min_delay_s: float = MIN_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.deliver = deliver
        """Called on the event loop with each arrival's complete PUBLISH packets, in order."""
        self.auth = auth or MqttAuth()
        self.will = will
        self.keepalive_s = keepalive_s
        self.on_up, self.on_down = on_up, on_down
        self.min_delay_s, self.max_delay_s = min_delay_s, max_delay_s
        self.session = 0
        """The number of the current (or last) connection; each delivery carries its own."""
        self._connection: _Connection | None = None
        """Set from CONNACK until the connection is lost or closed: publishes go on it."""
        self._receiving: _Connection | None = None
        """Set from CONNECT: the broker may send queued messages right behind its CONNACK,
        and they are acknowledged on this connection even if that comes before the session
        has read the CONNACK."""
        self._outgoing: dict[int, _Outgoing] = {}
        self._mid = 0
        self.up = False
        """Connected and subscribed."""

    # -- what the consumer calls

    def ack(self, deliveries: list[Delivery]) -> int:
        """PUBACK the QoS 1 deliveries of the current connection (one write); returns how many."""
        connection = self._receiving
        if connection is None or connection.transport is None:
            return 0
        session = connection.number
        mids = [d.mid for d in deliveries if d.qos and d.session == session]
        if mids:
            connection.transport.write(pubacks(mids))
        return len(mids)

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, confirm: bool = True
    ) -> asyncio.Future[None] | None:
        """Publish at QoS 1: sent now when connected, else after the next CONNACK, and again
        after every reconnect until the broker acknowledges it. With ``confirm`` the future
        resolves on its PUBACK (fails only when the session closes first)."""
        mid = self._next_mid()
        future = asyncio.get_running_loop().create_future() if confirm else None
        packet = publish_packet(topic, payload, qos=1, mid=mid, retain=retain)
        self._outgoing[mid] = _Outgoing(packet, future)
        connection = self._connection
        if connection is not None and connection.transport is not None:
            connection.transport.write(packet)
        return future

    @property
    def unconfirmed(self) -> int:
        """QoS 1 publishes waiting for their PUBACK."""
        return len(self._outgoing)

    async def run(self) -> None:
        """Connect and stay connected until cancelled; a lost or refused connection is tried
        again after 1, 2, 4 ... up to ``max_delay_s`` seconds. Cancelling leaves a live
        connection open for :meth:`close`."""
        delay = self.min_delay_s
        while True:
            try:
                await self._connect_once()
                delay = self.min_delay_s  # it was up: try again soon
                log.warning("ingest MQTT session lost; reconnecting")
            except (OSError, TimeoutError, ProtocolError) as exc:
                log.warning("ingest MQTT connection to %s:%s failed: %s", self.host, self.port, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay_s)

    async def close(self, last: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        """End the session cleanly: publish ``last`` (retained, QoS 1) and wait up to
        ``timeout_s`` for its PUBACK, then DISCONNECT (the broker then sends no will).
        Publishes still unconfirmed fail with ``ConnectionError``."""
        connection = self._connection
        if connection is not None and connection.transport is not None:
            if not connection.transport.is_closing():
                sent = self.publish(*last, retain=True) if last is not None else None
                if sent is not None:  # (asyncio.wait: neither cancels it nor raises)
                    await asyncio.wait({sent}, timeout=timeout_s)
            if not connection.transport.is_closing():
                connection.transport.write(DISCONNECT_PACKET)
                connection.transport.close()
        self._connection = self._receiving = None
        self._went_down()
        pending, self._outgoing = self._outgoing, {}
        for outgoing in pending.values():
            if outgoing.future is not None and not outgoing.future.done():
                outgoing.future.set_exception(ConnectionError("the MQTT session closed"))

    # -- what the connection calls

    def confirmed(self, mid: int) -> None:
        outgoing = self._outgoing.pop(mid, None)
        if outgoing is not None and outgoing.future is not None and not outgoing.future.done():
            outgoing.future.set_result(None)

    # -- inside

    def _next_mid(self) -> int:
        for _ in range(65_535):
            self._mid = self._mid % 65_535 + 1
            if self._mid not in self._outgoing:
                return self._mid
        raise ConnectionError("65,535 publishes wait for their PUBACK")

    def _went_down(self) -> None:
        if self.up:
            self.up = False
            self.on_down()

    async def _connect_once(self) -> None:
        """One connection, from TCP to its end; raises when it could not be set up."""
        loop = asyncio.get_running_loop()
        context = self.auth.ssl_context()
        self.session += 1
        number = self.session
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result when it is
        # cancelled in the same step as the awaited thing completes, swallowing the
        # cancellation (the session then never stopped: a consumer's shutdown hung)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            transport, connection = await loop.create_connection(
                lambda: _Connection(self, number),
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context is not None else None,
            )
        cancelled = False
        try:
            password = self.auth.password
            transport.write(
                connect_packet(
                    self.client_id,
                    keepalive_s=self.keepalive_s,
                    clean_session=False,
                    username=self.auth.username,
                    password=password.get_secret_value() if password is not None else None,
                    will=self.will,
                )
            )
            self._receiving = connection
            async with asyncio.timeout(CONNECT_TIMEOUT_S):  # shield: a late CONNACK is no error
                code = (await asyncio.shield(connection.connack))[1]
            if code:
                raise SessionRefusedError(
                    f"connection refused: {CONNACK_REFUSALS.get(code, f'code {code}')}"
                )
            self._connection = connection
            for outgoing in list(self._outgoing.values()):  # in the order they were published
                transport.write(bytes([outgoing.packet[0] | 0x08]) + outgoing.packet[1:])
            mid = self._next_mid()
            transport.write(subscribe_packet(mid, self.subscriptions))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                granted = (await asyncio.shield(connection.suback))[2:]
            if SUBACK_FAILURE in granted:
                raise SessionRefusedError(f"subscription refused: {self.subscriptions}")
            self.up = True
            self.on_up()
            await self._keep_alive(connection)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # stopped once connected: the connection stays for close() to say goodbye on
            if not (cancelled and self._connection is connection):
                if self._connection is connection:
                    self._connection = None
                if self._receiving is connection:
                    self._receiving = None
                connection.abort()
                self._went_down()

    async def _keep_alive(self, connection: _Connection) -> None:
        """PINGREQ every half keepalive until the connection is lost or goes silent."""
        loop = asyncio.get_running_loop()
        every = self.keepalive_s / 2
        while True:
            await asyncio.wait({connection.lost}, timeout=every)
            if connection.lost.done():
                return
            if loop.time() - connection.last_received > self.keepalive_s * 1.5:
                log.warning("ingest MQTT: the broker went silent; closing the connection")
                connection.abort()
                return
            assert connection.transport is not None
            connection.transport.write(PINGREQ_PACKET)
