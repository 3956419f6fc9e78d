"""The load generator through the broker: what it achieved, and what a subscriber received."""

from __future__ import annotations

from dataclasses import asdict

from bench.loadgen import LoadSpec, run_load
from bench.report import Measurement, per_second
from bench.subscriber import CountingSubscriber
from protocol import Channel, StationTopic


def measure_loadgen(name: str, spec: LoadSpec) -> Measurement:
    """Run ``spec`` while a paho subscriber counts every telemetry message (at the same QoS)."""
    telemetry = StationTopic.subscription(Channel.TELEMETRY)
    with CountingSubscriber(spec.host, spec.port, telemetry, spec.qos) as subscriber:
        stats = run_load(spec)
        subscriber.wait_for(stats.messages)
        delivered = subscriber.rates()
    figures = {
        "readings_per_s": stats.achieved_readings_per_s,
        "messages_per_s": stats.messages_per_s,
        "bytes_per_s": per_second(stats.bytes, stats.seconds),
        "readings": float(stats.readings),
        "messages": float(stats.messages),
        "seconds": stats.seconds,
        "errors": float(stats.errors),
        "received_messages_per_s": delivered["messages_per_s"],
        "received_readings_per_s": delivered["messages_per_s"] * spec.batch,
        "lost_messages": float(stats.messages - subscriber.messages),
    }
    params = {k: v for k, v in asdict(spec).items() if k not in ("host", "port")}
    params["rate"] = "max" if spec.rate is None else spec.rate
    target = "as fast as it can" if spec.rate is None else f"target {spec.rate:,.0f} readings/s"
    return Measurement(
        name=name,
        title=f"load generator, {target}, QoS {spec.qos} → mosquitto → paho subscriber",
        group="loadgen",
        params=params,
        figures=figures,
    )
