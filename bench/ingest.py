"""The ingest pipeline's rate: fed in-process, and end to end through the broker.

In-process, ``IngestPipeline.handle`` gets pre-encoded load-generator batches (fakes from
``ingest.fakes``, the default rules); its baseline is ``protocol.decode_telemetry`` alone over the
same messages. End to end, the load generator publishes through Mosquitto to the real
``IngestConsumer`` (paho, persistent session, QoS 1, manual acknowledgement) feeding the
pipeline in this process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from bench.loadgen import LoadSpec, LoadStats, StationStream, run_load, station_id
from bench.report import BenchError, Measurement, per_second
from ingest.consumer import IngestConsumer
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from protocol import StationTopic, decode_telemetry
from rules import RuleEngine, load_rules

SINK_KEEPS = 1000
"""Batches the memory sink holds before the bench empties it (memory stays bounded)."""
CONNECT_TIMEOUT_S = 10.0
DRAIN_LIMIT_S = 300.0


class TimedPipeline(IngestPipeline):
    """The pipeline with the default rules and in-memory fakes, timing the messages it handles."""

    def __init__(self) -> None:
        self.sink = MemorySink()
        self.letters = MemoryDeadLetters()
        super().__init__(
            engine=RuleEngine(load_rules()),
            alerts=MemoryAlerts(),
            dead_letters=self.letters,
            sinks=[self.sink],
        )
        self.handled, self.first, self.last = 0, 0.0, 0.0

    async def _handle(self, topic: str, payload: bytes, received_at: datetime) -> None:
        await super()._handle(topic, payload, received_at)
        self.last = time.monotonic()
        if not self.handled:
            self.first = self.last
        self.handled += 1
        if len(self.sink.batches) >= SINK_KEEPS:
            self.sink.batches.clear()

    def check_accepted(self, messages: int) -> None:
        """The bench measures accepted traffic: refuse a run with rejects or missing messages."""
        if self.letters.letters:
            topic, _, reason, detail = self.letters.letters[0]
            raise BenchError(f"pipeline rejected {topic}: {reason} {detail}")
        if self.handled != messages:
            raise BenchError(f"pipeline handled {self.handled} of {messages} messages")

    async def wait_for(self, expected: int, quiet_s: float, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        seen, changed = self.handled, time.monotonic()
        while self.handled < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if self.handled != seen:
                seen, changed = self.handled, time.monotonic()
            elif time.monotonic() - changed > quiet_s:
                return


def traffic(*, stations: int, batch: int, messages: int) -> list[tuple[str, bytes]]:
    """Load-generator batches, round-robin over the stations, encoded ahead of time."""
    streams = [StationStream(station_id(n), 1_000 + n, batch) for n in range(stations)]
    now_us = time.time_ns() // 1000
    return [
        (stream.topic, stream.next_payload(now_us))
        for stream in (streams[k % stations] for k in range(messages))
    ]


def _rates(
    name: str, title: str, params: Mapping[str, object], batches: int, batch: int, seconds: float
) -> Measurement:
    return Measurement(
        name=name,
        title=title,
        group="ingest",
        params=params,
        figures={
            "readings_per_s": per_second(batches * batch, seconds),
            "messages_per_s": per_second(batches, seconds),
        },
    )


def measure_decode(messages: list[tuple[str, bytes]], batch: int) -> Measurement:
    started = time.perf_counter()
    for topic, payload in messages:
        decode_telemetry(StationTopic.parse(topic), payload)
    seconds = time.perf_counter() - started
    params = {"messages": len(messages), "batch_size": batch}
    return _rates(
        "ingest_decode_only",
        "protocol.decode_telemetry alone (baseline)",
        params,
        len(messages),
        batch,
        seconds,
    )


async def _feed(pipeline: IngestPipeline, messages: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    for topic, payload in messages:
        await pipeline.handle(topic, payload)
    return time.perf_counter() - started


def measure_pipeline(messages: list[tuple[str, bytes]], batch: int) -> Measurement:
    pipeline = TimedPipeline()
    seconds = asyncio.run(_feed(pipeline, messages))
    pipeline.check_accepted(len(messages))
    params = {
        "messages": len(messages),
        "batch_size": batch,
        "rules": "default",
        "sinks": "ingest.fakes.MemorySink",
        "fed": "in-process, pre-encoded",
    }
    return _rates(
        "ingest_in_process",
        "IngestPipeline.handle, in-process",
        params,
        len(messages),
        batch,
        seconds,
    )


async def _through_broker(spec: LoadSpec) -> tuple[TimedPipeline, LoadStats]:
    pipeline = TimedPipeline()
    consumer = IngestConsumer(
        pipeline, host=spec.host, port=spec.port, client_id=f"bench-ingest-{uuid.uuid4().hex[:8]}"
    )
    async with asyncio.TaskGroup() as group:
        consuming = group.create_task(consumer.run(), name="ingest-consumer")
        try:
            await asyncio.wait_for(consumer.connected.wait(), CONNECT_TIMEOUT_S)
            stats = await asyncio.to_thread(run_load, spec)
            await pipeline.wait_for(stats.messages, quiet_s=2.0, limit_s=DRAIN_LIMIT_S)
        finally:
            consuming.cancel()
    return pipeline, stats


def measure_end_to_end(spec: LoadSpec) -> Measurement:
    """Load generator → Mosquitto → IngestConsumer → pipeline: messages/s the pipeline handled."""
    pipeline, stats = asyncio.run(_through_broker(spec))
    pipeline.check_accepted(stats.messages)
    measurement = _rates(
        "ingest_end_to_end",
        "load generator → mosquitto → IngestConsumer (paho) → IngestPipeline",
        {
            "stations": spec.stations,
            "batch_size": spec.batch,
            "qos": spec.qos,
            "processes": spec.processes,
            "readings": stats.readings,
            "rate": "max",
        },
        pipeline.handled,
        spec.batch,
        pipeline.last - pipeline.first,
    )
    figures = {
        **measurement.figures,
        "loadgen_readings_per_s": stats.achieved_readings_per_s,
        "loadgen_errors": float(stats.errors),
    }
    return replace(measurement, figures=figures)
