"""Consumers timed draining a pre-filled broker queue: the baselines of the whole-stack figures.

Every consumer of one phase has a persistent session (``clean_session=False``) registered
before the load generator publishes, so the broker queues the same messages for each of them.
Then, with the publishers gone, each consumer in turn resumes its session and drains its queue
alone: the broker rate (``mosquitto_sub``, C), a paho subscriber that only counts, ingest's own
MQTT session acknowledging at once and doing nothing else, and ingest. A rate is messages from
the first received to the last, over that span.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.report import BenchError
from bench.subscriber import CountingSubscriber
from ingest.mqttwire import Delivery
from ingest.session import MqttSession
from protocol import Channel, StationTopic

CONNECT_TIMEOUT_S = 10.0
DRAIN_LIMIT_S = 300.0
INGEST_FILTERS = tuple(StationTopic.subscription(c) for c in (Channel.STATE, Channel.TELEMETRY))
"""What ingest subscribes to; the baselines subscribe to the same."""


def register_session(
    host: str, port: int, client_id: str, filters: Sequence[str] = INGEST_FILTERS
) -> None:
    """Create a persistent QoS 1 session for ``client_id`` and leave: the broker queues for it."""
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )
    client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(CONNECT_TIMEOUT_S):
            raise BenchError(f"could not register session {client_id} at {host}:{port}")
    finally:
        client.disconnect()
        client.loop_stop()


def forget_session(host: str, port: int, client_id: str) -> None:
    """Drop ``client_id``'s persistent session (and what is queued for it)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )
    client.connect(host, port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def drain_paho(
    host: str, port: int, client_id: str, expected: int, filters: Sequence[str] = INGEST_FILTERS
) -> dict[str, float]:
    """The do-nothing paho subscriber (QoS 1, acknowledges after its callback) resumes
    ``client_id`` and drains ``expected`` messages."""
    with CountingSubscriber(
        host, port, filters, 1, client_id=client_id, clean_session=False
    ) as subscriber:
        subscriber.wait_for(expected, quiet_s=3.0, limit_s=DRAIN_LIMIT_S)
        figures = subscriber.rates()
    figures["lost_messages"] = float(expected - subscriber.messages)
    return figures


def drain_session(
    host: str, port: int, client_id: str, expected: int, filters: Sequence[str] = INGEST_FILTERS
) -> dict[str, float]:
    """Ingest's MQTT session (``ingest.session``) with nothing behind it resumes ``client_id``
    and drains ``expected`` messages, acknowledging each arrival as it comes: what the client
    costs ingest, beside what paho would."""
    return asyncio.run(_drain_session(host, port, client_id, expected, filters))


async def _drain_session(
    host: str, port: int, client_id: str, expected: int, filters: Sequence[str]
) -> dict[str, float]:
    count = 0
    first = last = 0.0
    done = asyncio.Event()

    def deliver(deliveries: list[Delivery]) -> None:
        nonlocal count, first, last
        session.ack(deliveries)
        now = time.monotonic()
        if not count:
            first = now
        count += len(deliveries)
        last = now
        if count >= expected:
            done.set()

    session = MqttSession(
        host, port, client_id, subscriptions=[(f, 1) for f in filters], deliver=deliver
    )
    running = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(done.wait(), DRAIN_LIMIT_S)
    except TimeoutError:
        raise BenchError(f"ingest's session received {count} of {expected} messages") from None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await session.close()
    if count < 2 or last <= first:
        raise BenchError(f"ingest's session received {count} messages: too few for a rate")
    return {
        "messages_per_s": (count - 1) / (last - first),
        "received_messages": float(count),
        "lost_messages": float(expected - count),
    }


def drain_mosquitto_sub(
    host: str, port: int, client_id: str, expected: int, filters: Sequence[str] = INGEST_FILTERS
) -> dict[str, float]:
    """``mosquitto_sub`` resumes ``client_id`` at QoS 1 and exits after ``expected`` messages;
    it stamps each one (``-F %U``, Unix time in ns) into a file: first to last is the rate."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise BenchError("mosquitto_sub is not on PATH (Debian: apt-get install mosquitto-clients)")
    topics = [arg for f in filters for arg in ("-t", f)]
    command = [binary, "-h", host, "-p", str(port), "-i", client_id, "-c", "-q", "1", *topics]
    command += ["-C", str(expected), "-F", "%U"]
    with tempfile.TemporaryDirectory(prefix="citysense-bench-sub-") as workdir:
        stamps = Path(workdir) / "stamps"
        with stamps.open("wb") as out:
            try:
                subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    timeout=DRAIN_LIMIT_S,
                    check=True,
                )
            except subprocess.CalledProcessError as exc:
                raise BenchError(f"mosquitto_sub failed: {exc.stderr!r}") from None
            except subprocess.TimeoutExpired:
                raise BenchError(f"mosquitto_sub did not get {expected} messages") from None
        lines = stamps.read_bytes().split()
    if len(lines) < 2:
        raise BenchError(f"mosquitto_sub received {len(lines)} messages: too few for a rate")
    span = float(lines[-1]) - float(lines[0])
    if span <= 0:
        raise BenchError("mosquitto_sub received everything within one clock tick")
    return {
        "messages_per_s": (len(lines) - 1) / span,
        "received_messages": float(len(lines)),
        "lost_messages": float(expected - len(lines)),
    }
