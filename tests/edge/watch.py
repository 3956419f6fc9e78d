"""Test helpers: watch a station's MQTT topics, and a link that a test can cut."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

import aiomqtt

from citysense.broker import free_port
from edge.driver import SensorDriver
from protocol import (
    Channel,
    Reading,
    SensorInfo,
    StationState,
    StationTopic,
    TelemetryBatch,
    decode_state,
    decode_telemetry,
)
from protocol.topics import TOPIC_ROOT


class StationWatcher:
    """Everything one subscriber saw on a station's topics, decoded."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.states: list[tuple[StationState, bool]] = []
        """Each state message with its retain flag."""
        self.batches: list[TelemetryBatch] = []

    @property
    def readings(self) -> list[Reading]:
        return [reading for batch in self.batches for reading in batch.readings]

    async def until(self, done: Callable[[StationWatcher], bool], within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not done(self):
                self._record(await anext(self.client.messages))

    def _record(self, message: aiomqtt.Message) -> None:
        topic = StationTopic.parse(message.topic.value)
        assert isinstance(message.payload, bytes)
        if topic.channel is Channel.STATE:
            self.states.append((decode_state(topic, message.payload), message.retain))
        else:
            self.batches.append(decode_telemetry(topic, message.payload))


@contextlib.asynccontextmanager
async def watch_station(host: str, port: int, station_id: str) -> AsyncIterator[StationWatcher]:
    async with aiomqtt.Client(host, port, identifier=f"test-{uuid.uuid4().hex}") as client:
        await client.subscribe(f"{TOPIC_ROOT}/stations/{station_id}/#", qos=1)
        yield StationWatcher(client)


class RecordingDriver:
    """Wraps a driver and remembers when it was read."""

    def __init__(self, inner: SensorDriver) -> None:
        self.inner = inner
        self.read_at: list[datetime] = []

    def sensors(self) -> Sequence[SensorInfo]:
        return self.inner.sensors()

    def read(self, ts: datetime) -> list[Reading]:
        self.read_at.append(ts)
        return self.inner.read(ts)


class FlakyLink:
    """A TCP relay in front of the broker; ``cut()`` drops the link, ``restore()`` heals it.

    While cut, nothing listens on ``port``, so connection attempts are refused at once.
    """

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._broker = (broker_host, broker_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.host, self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _relay(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            broker_in, broker_out = await asyncio.open_connection(*self._broker)
        except OSError:
            client_out.transport.abort()
            return
        self._writers |= {client_out, broker_out}
        try:
            await asyncio.gather(_pump(client_in, broker_out), _pump(broker_in, client_out))
        finally:
            self._writers -= {client_out, broker_out}


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
