"""One MQTT publisher for the product's own traffic: replay, dead-letter replay.

paho-mqtt driven by the asyncio loop's socket callbacks (as aiomqtt does inside): against a local
Mosquitto it publishes 20,000-35,000 QoS 1 messages/s where aiomqtt with the same window of
concurrent publishes manages 11,000-12,000 (aiomqtt needs a task, a ``wait_for`` and an event per
message; docs/benchmarks.md). paho's own in-flight limit is switched off because it rescans every
unconfirmed message on each PUBACK; the window here does that job in O(1). Load generation for
the benchmarks (``bench.loadgen``) drives paho by hand in a thread of its own instead: it has no
event loop to share.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike


class PublishError(Exception):
    """The broker refused, dropped or stalled what was published."""


class BrokerUnreachableError(PublishError):
    """No connection to the broker at all (refused, unknown host, no answer)."""


class MqttPublisher:
    """A paho-mqtt client run by the asyncio loop: ``publish`` waits only when the window is full.

    paho calls the socket callbacks below; the connect itself (blocking DNS and TCP) runs in
    the default executor, so the two that can fire there hop onto the loop thread-safely.
    """

    def __init__(self, host: str, port: int, client_id: str, window: int) -> None:
        self._host, self._port, self._window = host, port, max(1, window)
        self._loop = asyncio.get_running_loop()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.max_inflight_messages_set(0)  # our window bounds it; paho's scans per ack
        self._unconfirmed = 0
        self._changed = asyncio.Event()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._socket_open = False
        self._socket_closed = asyncio.Event()
        self._failure: PublishError | None = None
        self._closing = False
        self._misc_task: asyncio.Task[None] | None = None
        self._install_callbacks()

    def _install_callbacks(self) -> None:
        client = self._client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_socket_close = self._on_socket_close

    async def __aenter__(self) -> MqttPublisher:
        try:
            await self._connect()
        except BaseException:
            await self._shutdown()
            raise
        self._misc_task = asyncio.create_task(self._keep_alive(), name="replay-mqtt-keepalive")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._shutdown()

    async def _connect(self) -> None:
        try:
            await self._loop.run_in_executor(None, self._client.connect, self._host, self._port)
            async with asyncio.timeout(10):
                await self._connected
        except (OSError, TimeoutError) as exc:
            where = f"{self._host}:{self._port}"
            raise BrokerUnreachableError(
                f"cannot connect to the broker at {where}: {exc}"
            ) from None

    async def _shutdown(self) -> None:
        """Say goodbye if a socket is open and wait (briefly) until paho has closed it."""
        self._closing = True
        if self._misc_task is not None:
            self._misc_task.cancel()
            await asyncio.wait([self._misc_task])
        if self._socket_open and not self._socket_closed.is_set():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._socket_closed.wait()

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._raise_if_failed()
        try:
            info = self._client.publish(topic, payload, qos, retain)
        except ValueError as exc:
            raise PublishError(f"cannot publish on {topic[:80]!r}: {exc}") from None
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish on {topic!r} failed: {mqtt.error_string(info.rc)}")
        self._unconfirmed += 1
        if self._unconfirmed >= self._window:
            await self._wait_until_unconfirmed(self._window // 2)

    async def drain(self) -> None:
        """Return once the broker confirmed every message published so far."""
        await self._wait_until_unconfirmed(0)

    async def _wait_until_unconfirmed(self, limit: int, stall_s: float = 30.0) -> None:
        while self._unconfirmed > limit:
            self._raise_if_failed()
            self._changed.clear()
            try:
                async with asyncio.timeout(stall_s):
                    await self._changed.wait()
            except TimeoutError:
                raise PublishError(
                    f"the broker confirmed nothing for {stall_s:g} s "
                    f"({self._unconfirmed} messages unconfirmed)"
                ) from None
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _keep_alive(self) -> None:
        """paho's housekeeping (PINGREQ, retries) once a second, as its own loop would."""
        while True:
            if self._client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1)

    def _guarded(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:  # paho raises socket errors from loop_read/loop_write
            self._fail(PublishError(f"MQTT connection failed: {exc}"))

    def _fail(self, failure: PublishError) -> None:
        if self._failure is None:
            self._failure = failure
        if not self._connected.done():
            self._connected.set_exception(failure)
        self._changed.set()

    def _on_connect(self, *args: object) -> None:
        reason = args[3]
        if isinstance(reason, ReasonCode) and reason.is_failure:
            self._fail(PublishError(f"the broker refused the connection: {reason}"))
        elif not self._connected.done():
            self._connected.set_result(None)

    def _on_disconnect(self, *args: object) -> None:
        if not self._closing:
            self._fail(PublishError(f"the broker closed the connection ({args[3]})"))

    def _on_publish(self, *_: object) -> None:
        self._unconfirmed -= 1
        self._changed.set()

    def _on_socket_open(self, client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._socket_open = True
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.call_soon_threadsafe(
            self._loop.add_reader, sock.fileno(), self._guarded, client.loop_read
        )

    def _on_socket_register_write(
        self, client: mqtt.Client, _userdata: object, sock: SocketLike
    ) -> None:
        self._loop.call_soon_threadsafe(
            self._loop.add_writer, sock.fileno(), self._guarded, client.loop_write
        )

    def _on_socket_unregister_write(
        self, _client: mqtt.Client, _userdata: object, sock: SocketLike
    ) -> None:
        self._loop.remove_writer(sock.fileno())

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        fileno = sock.fileno()
        if fileno >= 0:
            self._loop.remove_reader(fileno)
            self._loop.remove_writer(fileno)
        self._socket_closed.set()
