"""The raw broker rate: a publisher in its own process, a counting subscriber in this one.

``broker_raw_qos{0,1}`` (paho, small messages, as fast as possible) is the baseline every other
broker figure of the run is divided by. The same harness compares client libraries and styles.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing import get_context

from bench.publishers import FLUSH_TIMEOUT_S, STYLES, WINDOW, Published, PublishJob, describe
from bench.report import BenchError, Measurement, per_second
from bench.subscriber import CountingSubscriber

BASELINE_STYLE = "paho_manual"
SMALL_PAYLOAD = 100
SPAWN_TIMEOUT_S = 30.0


def baseline_name(qos: int) -> str:
    return f"broker_raw_qos{qos}"


def publish_in_process(style: str, job: PublishJob) -> Published:
    """Run publisher ``style`` in a fresh spawned process and wait (bounded) for its result."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(STYLES[style], job)
        try:
            return future.result(timeout=job.seconds + FLUSH_TIMEOUT_S + SPAWN_TIMEOUT_S)
        except FutureTimeout:
            raise BenchError(f"publisher {style} did not finish in time") from None


def measure_publisher(
    host: str, port: int, *, style: str, qos: int, seconds: float, payload_size: int = SMALL_PAYLOAD
) -> Measurement:
    """Messages/s a subscriber receives while publisher ``style`` pushes as fast as it can."""
    topic = f"bench/raw/{uuid.uuid4().hex}"
    job = PublishJob(host, port, topic, qos, payload_size, seconds)
    with CountingSubscriber(host, port, topic, qos) as subscriber:
        published = publish_in_process(style, job)
        subscriber.wait_for(published.messages)
        figures = subscriber.rates()
    figures |= {
        "received_messages_per_s": figures["messages_per_s"],
        "published_messages": float(published.messages),
        "publisher_messages_per_s": per_second(published.messages, published.seconds),
        "lost_messages": float(published.messages - subscriber.messages),
        "errors": float(published.errors),
    }
    name = baseline_name(qos) if style == BASELINE_STYLE else f"client_{style}_qos{qos}"
    return Measurement(
        name=name,
        title=f"{describe(style)} → mosquitto → paho subscriber, QoS {qos}",
        group="baseline" if style == BASELINE_STYLE else "clients",
        params={
            "publisher": style,
            "qos": qos,
            "payload_bytes": payload_size,
            "seconds": seconds,
            "window": WINDOW,
        },
        figures=figures,
    )
