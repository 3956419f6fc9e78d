"""Publishers that push one small payload as fast as they can, one per client library or style.

The styles are the comparison (docs/benchmarks.md, "Which client library"): ``paho_manual`` is the
load generator's own publisher (``bench.loadgen.SharePublisher``), the others are what it was
measured against. The product's publisher (replay, dead-letter replay) is
``recording.publisher.MqttPublisher``.

Each runs in its own OS process (spawn-safe top-level functions), for ``seconds`` seconds, keeps
at most ``WINDOW`` messages outstanding, then waits (bounded) for what is still in flight, and
returns how many messages completed (QoS 1: acknowledged; QoS 0: written).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bench.loadgen import SharePublisher

WINDOW = 1000
AIOMQTT_TASKS = 64
FLUSH_TIMEOUT_S = 10.0
OK = MQTTErrorCode.MQTT_ERR_SUCCESS


@dataclass(frozen=True)
class PublishJob:
    host: str
    port: int
    topic: str
    qos: int
    payload_size: int
    seconds: float

    @property
    def payload(self) -> bytes:
        return b"x" * self.payload_size


@dataclass(frozen=True)
class Published:
    messages: int
    errors: int
    seconds: float


def _paho_client(job: PublishJob, on_done: Callable[[], None]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = lambda *_args: on_done()
    client.connect(job.host, job.port, keepalive=60)
    return client


class _OnePayload:
    """A stream for ``SharePublisher``: one topic, the same payload every time."""

    batch_size = 1
    station_id = "bench"

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self._payload = topic, payload

    def next_payload(self, _now_us: int) -> bytes:
        return self._payload


def paho_manual(job: PublishJob) -> Published:
    """paho driven by hand in one thread (``bench.loadgen.SharePublisher``, what the load
    generator publishes with): publish, and let ``loop()`` read acks when needed."""
    publisher = SharePublisher(job.host, job.port, job.qos, [_OnePayload(job.topic, job.payload)])
    publisher.connect()
    stats = publisher.run(None, None, job.seconds)
    publisher.close()
    return Published(stats.messages, stats.errors, stats.finished - stats.started)


def paho_threaded(job: PublishJob) -> Published:
    """paho's own network thread (``loop_start``); a semaphore bounds what is outstanding."""
    window = threading.Semaphore(WINDOW)
    done = [0]

    def completed() -> None:
        done[0] += 1
        window.release()

    client = _paho_client(job, completed)
    client.loop_start()
    sent, payload, errors = 0, job.payload, 0
    started = time.monotonic()
    deadline = started + job.seconds
    while time.monotonic() < deadline:
        if not window.acquire(timeout=0.5):
            continue
        if client.publish(job.topic, payload, job.qos).rc != OK:
            errors += 1
            break
        sent += 1
    flush_until = time.monotonic() + FLUSH_TIMEOUT_S
    while done[0] < sent and time.monotonic() < flush_until:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return Published(done[0], errors + sent - done[0], elapsed)


async def _aiomqtt(job: PublishJob, tasks: int) -> Published:
    counts = [0, 0]
    quiet = logging.getLogger("bench.aiomqtt")  # aiomqtt warns on every publish beyond 10 pending
    quiet.setLevel(logging.ERROR)
    async with aiomqtt.Client(
        job.host, job.port, max_inflight_messages=WINDOW, logger=quiet
    ) as client:
        started = time.monotonic()
        deadline = started + job.seconds

        async def publish_until_deadline() -> None:
            payload = job.payload
            while time.monotonic() < deadline:
                try:
                    await client.publish(job.topic, payload, qos=job.qos, timeout=FLUSH_TIMEOUT_S)
                except aiomqtt.MqttError:
                    counts[1] += 1
                    return
                counts[0] += 1

        async with asyncio.TaskGroup() as group:
            for n in range(tasks):
                group.create_task(publish_until_deadline(), name=f"publisher-{n}")
        elapsed = time.monotonic() - started
    return Published(counts[0], counts[1], elapsed)


def aiomqtt_sequential(job: PublishJob) -> Published:
    """aiomqtt 2.x, one ``await client.publish()`` after the other."""
    return asyncio.run(_aiomqtt(job, 1))


def aiomqtt_concurrent(job: PublishJob) -> Published:
    """aiomqtt 2.x, ``AIOMQTT_TASKS`` tasks awaiting their publishes concurrently."""
    return asyncio.run(_aiomqtt(job, AIOMQTT_TASKS))


STYLES: dict[str, Callable[[PublishJob], Published]] = {
    "paho_manual": paho_manual,
    "paho_threaded": paho_threaded,
    "aiomqtt_sequential": aiomqtt_sequential,
    "aiomqtt_concurrent": aiomqtt_concurrent,
}


def describe(style: str) -> str:
    doc: Any = STYLES[style].__doc__
    return str(doc).strip().splitlines()[0]
