"""Capture live MQTT traffic from any broker into a recording.

Each message is stored with its receive time (ns since the Unix epoch, UTC) as publish time,
its QoS and its retain flag. The subscription uses MQTT 5 with *retain as published*, so a
retained message published while capturing keeps its flag; against an MQTT 3.1.1 broker
(amqtt) only the retained messages sent on subscribing carry it. The file is flushed every
``flush_interval`` seconds, so a killed capture loses at most that much, and the torn tail it
may leave is cut off by the next append (``RecordingWriter(..., append=True)``).

A lost connection is re-established with the project's jittered backoff; the gap is counted in
``CaptureStats.reconnects``. A broker that cannot be reached at the start is an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.subscribeoptions import SubscribeOptions

from protocol.backoff import Backoff
from recording.format import Record, RecordingWriter

log = logging.getLogger(__name__)

DEFAULT_TOPICS: Final = ("citysense/#",)


class CaptureError(Exception):
    unreachable = False
    """True when no connection to the broker could be made at all."""

    """The broker could not be reached or refused the subscription."""


@dataclass(frozen=True, slots=True)
class CaptureStats:
    records: int
    bytes: int
    """Payload bytes captured."""
    wall_seconds: float
    reconnects: int
    protocol: str
    """``"MQTT 5"`` (retain flags exact) or ``"MQTT 3.1.1"`` (live retain flags lost)."""
    repaired_bytes: int
    """Torn tail cut off the end of an existing recording before appending."""


async def capture(
    path: str | os.PathLike[str],
    *,
    host: str,
    port: int,
    topics: Sequence[str] = DEFAULT_TOPICS,
    duration: float | None = None,
    max_records: int | None = None,
    metadata: Mapping[str, object] | None = None,
    append: bool = False,
    stop: asyncio.Event | None = None,
    subscribed: asyncio.Event | None = None,
    client_id: str | None = None,
    flush_interval: float = 0.5,
) -> CaptureStats:
    """Record traffic on ``topics`` until ``duration`` seconds passed, ``max_records`` were
    captured, ``stop`` is set, or the task is cancelled; the recording is closed in every case.

    ``subscribed`` is set once the broker acknowledged the subscription. Raises ``ValueError``
    for an invalid topic filter, ``RecordingError`` for a file it cannot write or continue,
    and ``CaptureError`` when the broker cannot be reached at the start.
    """
    if not topics:
        raise ValueError("capture needs at least one topic filter")
    for topic in topics:
        check_topic_filter(topic)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with RecordingWriter(path, metadata, append=append) as writer:
        session = _CaptureSession(
            writer,
            host=host,
            port=port,
            topics=topics,
            max_records=max_records,
            subscribed=subscribed or asyncio.Event(),
            client_id=client_id or f"citysense-capture-{uuid.uuid4().hex[:12]}",
        )
        try:
            await _run_until_done(session, writer, duration, stop, flush_interval)
        except CaptureError:
            if writer.created and writer.records_written == 0:
                writer.close()
                writer.path.unlink()  # a broker we never heard from leaves no empty recording
            raise
    return CaptureStats(
        records=writer.records_written,
        bytes=session.payload_bytes,
        wall_seconds=loop.time() - started,
        reconnects=session.reconnects,
        protocol=session.protocol_name,
        repaired_bytes=writer.repaired_bytes,
    )


def check_topic_filter(topic: str) -> None:
    """Raise ``ValueError`` for a filter MQTT would refuse (``#`` only last, ``+`` whole levels)."""
    levels = topic.split("/")
    valid = 0 < len(topic.encode()) <= 0xFFFF and "\0" not in topic
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            valid = False
        if "+" in level and level != "+":
            valid = False
    if not valid:
        raise ValueError(f"invalid MQTT topic filter {topic!r}")


async def _run_until_done(
    session: _CaptureSession,
    writer: RecordingWriter,
    duration: float | None,
    stop: asyncio.Event | None,
    flush_interval: float,
) -> None:
    receiver = asyncio.create_task(session.receive(), name="capture-receive")
    flusher = asyncio.create_task(_flush_every(writer, flush_interval), name="capture-flush")
    stopper = asyncio.create_task((stop or asyncio.Event()).wait(), name="capture-stop")
    try:
        await asyncio.wait(
            {receiver, stopper}, timeout=duration, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in (receiver, flusher, stopper):
            task.cancel()
        await asyncio.gather(receiver, flusher, stopper, return_exceptions=True)
    if not receiver.cancelled() and (failure := receiver.exception()) is not None:
        raise failure


async def _flush_every(writer: RecordingWriter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        writer.flush()


class _CaptureSession:
    """The MQTT side of a capture: subscribe, write each message, reconnect when dropped."""

    def __init__(
        self,
        writer: RecordingWriter,
        *,
        host: str,
        port: int,
        topics: Sequence[str],
        max_records: int | None,
        subscribed: asyncio.Event,
        client_id: str,
    ) -> None:
        self._writer, self._host, self._port = writer, host, port
        self._topics, self._max_records = list(topics), max_records
        self._subscribed, self._client_id = subscribed, client_id
        self._protocol = aiomqtt.ProtocolVersion.V5
        self.payload_bytes = 0
        self.reconnects = 0

    @property
    def protocol_name(self) -> str:
        return "MQTT 5" if self._protocol is aiomqtt.ProtocolVersion.V5 else "MQTT 3.1.1"

    async def receive(self) -> None:
        backoff = Backoff()
        while not self._done():
            try:
                await self._session(backoff)
            except MqttConnectError as exc:
                if self._subscribed.is_set():
                    await self._back_off(backoff, exc)
                elif self._protocol is aiomqtt.ProtocolVersion.V5:
                    log.warning("%s refused MQTT 5 (%s); capturing with 3.1.1", self._where, exc)
                    self._protocol = aiomqtt.ProtocolVersion.V311
                else:
                    raise CaptureError(f"the broker at {self._where} refused: {exc}") from None
            except aiomqtt.MqttError as exc:
                if not self._subscribed.is_set():
                    error = CaptureError(f"cannot capture from {self._where}: {exc}")
                    error.unreachable = True
                    raise error from None
                await self._back_off(backoff, exc)

    async def _session(self, backoff: Backoff) -> None:
        async with aiomqtt.Client(
            self._host, self._port, identifier=self._client_id, protocol=self._protocol
        ) as client:
            for topic in self._topics:
                await self._subscribe(client, topic)
            backoff.reset()
            self._subscribed.set()
            log.info("capturing %s from %s", ", ".join(self._topics), self._where)
            async for message in client.messages:
                self._write(message)
                if self._done():
                    return

    async def _subscribe(self, client: aiomqtt.Client, topic: str) -> None:
        if self._protocol is aiomqtt.ProtocolVersion.V5:
            await client.subscribe(topic, options=SubscribeOptions(qos=2, retainAsPublished=True))
        else:
            await client.subscribe(topic, qos=2)

    def _write(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        record = Record(time.time_ns(), message.topic.value, data, message.qos, message.retain)
        self._writer.write(record)
        self.payload_bytes += len(data)

    def _done(self) -> bool:
        return self._max_records is not None and self._writer.records_written >= self._max_records

    async def _back_off(self, backoff: Backoff, failure: Exception) -> None:
        delay = backoff.next_delay()
        self.reconnects += 1
        log.warning("capture lost %s (%s); reconnecting in %.1f s", self._where, failure, delay)
        await asyncio.sleep(delay)

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._port}"
