"""The consumer's unit of work on a real Mosquitto: messages are handled in groups of what has
arrived while the previous commit runs, one commit covers everything handled meanwhile (at
most ``max_group`` messages), and a message is acknowledged only after a commit that began
after it was handled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citysense.broker import MosquittoBroker
from ingest.consumer import IngestConsumer
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from protocol import Channel, StationTopic, encode
from rules import DEFAULT_RULES_FILE, RuleEngine, parse_rules
from tests.factories import batch, tilt
from tests.waiting import until


class GatedSink(MemorySink):
    """A sink whose ``flush`` (part of every commit) waits while the gate is shut."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.flushes = 0

    async def flush(self) -> None:
        await self.gate.wait()
        self.flushes += 1


class GroupedPipeline(IngestPipeline):
    """Records the size of every group the consumer hands it."""

    groups: list[int]

    async def handle_messages(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.groups.append(len(messages))
        await super().handle_messages(messages)


@pytest.fixture(scope="module")
def broker() -> Iterator[MosquittoBroker]:
    """A broker of this module's own: the session's shared one holds earlier tests' retained
    births, which a new subscriber receives (and would count)."""
    with MosquittoBroker() as private:
        yield private


def _pipeline(sink: GatedSink) -> GroupedPipeline:
    pipeline = GroupedPipeline(
        engine=RuleEngine(parse_rules(DEFAULT_RULES_FILE.read_text())),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[sink],
    )
    pipeline.groups = []
    return pipeline


def _store_down(prefix: str) -> tuple[GatedSink, GroupedPipeline, str]:
    """A pipeline whose every commit waits (the sink's gate shut), and a fresh station id."""
    sink = GatedSink()
    sink.gate.clear()
    return sink, _pipeline(sink), f"{prefix}-{uuid.uuid4().hex[:6]}"


def _acked(pipeline: IngestPipeline) -> float:
    return _sample(pipeline, "citysense_ingest_acknowledged_total")


def _sample(pipeline: IngestPipeline, name: str) -> float:
    value = pipeline.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


@asynccontextmanager
async def _consuming(
    broker: MosquittoBroker, pipeline: IngestPipeline, **options: float
) -> AsyncIterator[IngestConsumer]:
    consumer = IngestConsumer(
        pipeline,
        host=broker.host,
        port=broker.port,
        client_id=f"consumer-{uuid.uuid4().hex[:8]}",
        **options,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.connected.wait(), 10)
        yield consumer
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _publish(broker: MosquittoBroker, station: str, count: int) -> None:
    """``count`` batches of ``station`` at QoS 1, each acknowledged by the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        topic = str(StationTopic(station, Channel.TELEMETRY))
        sent = [
            client.publish(
                topic,
                encode(batch([tilt(seq, 1.0, f"{station}.cover-01")], seq, station)),
                qos=1,
            )
            for seq in range(count)
        ]
        for info in sent:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_a_burst_is_handled_in_groups_and_each_acknowledged_after_its_commit(
    broker: MosquittoBroker,
) -> None:
    sink = GatedSink()
    pipeline = _pipeline(sink)
    station = f"cg-{uuid.uuid4().hex[:6]}"
    async with _consuming(broker, pipeline, max_group=100):
        await asyncio.to_thread(_publish, broker, station, 500)
        await until(lambda: _acked(pipeline) == 500)
    assert [b.seq for b in sink.batches] == list(range(500))
    assert sum(pipeline.groups) == 500
    assert max(pipeline.groups) <= 100
    assert 5 <= sink.flushes <= len(pipeline.groups)  # a commit holds 100 messages at most


async def test_nothing_is_acknowledged_while_the_commit_waits(broker: MosquittoBroker) -> None:
    sink, pipeline, station = _store_down("cw")  # every commit waits
    async with _consuming(broker, pipeline):
        await asyncio.to_thread(_publish, broker, station, 20)
        await until(lambda: _sample(pipeline, "citysense_ingest_in_flight") == 20)
        await asyncio.sleep(0.3)
        assert _acked(pipeline) == 0
        assert 1 <= len(sink.batches) <= 20  # handled, and held by the stalled commit
        sink.gate.set()
        await until(lambda: _acked(pipeline) == 20)


async def test_handling_goes_on_while_a_commit_waits_until_the_next_commit_is_full(
    broker: MosquittoBroker,
) -> None:
    sink, pipeline, station = _store_down("ca")
    async with _consuming(broker, pipeline, max_group=10):
        await asyncio.to_thread(_publish, broker, station, 50)
        # the first commit waits with the first group; the next commit fills up to 10
        await until(lambda: len(pipeline.groups) >= 2 and sum(pipeline.groups[1:]) == 10)
        # every message arrives (the last may still be on its way), and still nothing more is
        # handled and nothing acknowledged
        await until(lambda: _sample(pipeline, "citysense_ingest_in_flight") == 50)
        await asyncio.sleep(0.3)
        assert sum(pipeline.groups) == pipeline.groups[0] + 10
        assert _acked(pipeline) == 0
        sink.gate.set()
        await until(lambda: _acked(pipeline) == 50)
    assert [b.seq for b in sink.batches] == list(range(50))


async def test_one_commit_covers_every_group_handled_while_the_previous_one_ran(
    broker: MosquittoBroker,
) -> None:
    sink, pipeline, station = _store_down("cc")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    async with _consuming(broker, pipeline):
        client.connect(broker.host, broker.port)
        client.loop_start()
        try:
            topic = str(StationTopic(station, Channel.TELEMETRY))
            for seq in range(5):  # one at a time: five groups of one
                payload = encode(batch([tilt(seq, 1.0, f"{station}.cover-01")], seq, station))
                client.publish(topic, payload, qos=1).wait_for_publish(10)
                await until(lambda n=seq + 1: len(pipeline.groups) == n)  # type: ignore[misc]
        finally:
            client.loop_stop()
            client.disconnect()
        assert pipeline.groups == [1] * 5
        assert _acked(pipeline) == 0
        sink.gate.set()  # the first commit (1 message) ends, one more covers the other 4
        await until(lambda: _acked(pipeline) == 5)
    assert sink.flushes == 2


async def test_a_lone_message_is_committed_and_acknowledged(broker: MosquittoBroker) -> None:
    sink = GatedSink()
    pipeline = _pipeline(sink)
    station = f"cl-{uuid.uuid4().hex[:6]}"
    async with _consuming(broker, pipeline):
        await asyncio.to_thread(_publish, broker, station, 1)
        await until(lambda: _acked(pipeline) == 1, within_s=5)
    assert pipeline.groups == [1]
    assert _sample(pipeline, "citysense_ingest_in_flight") == 0
