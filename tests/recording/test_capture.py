"""Capture from the real Mosquitto into a recording, and `citysense record`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from citysense.broker import MosquittoBroker, free_port
from citysense.embedded_broker import embedded_broker
from recording.capture import CaptureError, CaptureStats, capture
from recording.format import Record, RecordingReader, summarize

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"test/capture/{uuid.uuid4().hex}"


def messages(prefix: str, count: int, retain: int = -1) -> list[tuple[str, bytes, int, bool]]:
    """(topic, payload, qos, retain): binary payloads, every QoS, message ``retain`` retained."""
    return [
        (f"{prefix}/st-{i % 3}", bytes([i, 0, 255]) * (i % 4), i % 3, i == retain)
        for i in range(count)
    ]


async def publish(broker: MosquittoBroker, sent: Sequence[tuple[str, bytes, int, bool]]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic, payload, qos, retain in sent:
            await client.publish(topic, payload, qos=qos, retain=retain)


async def clear_retained(broker: MosquittoBroker, topics: set[str]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


def recorded(path: Path) -> int:
    return len(read(path)) if path.exists() else 0


async def until_recorded(path: Path, count: int) -> None:
    """Poll the file, the capture's only output, until it holds ``count`` records."""
    async with asyncio.timeout(5):
        while True:
            if recorded(path) >= count:
                return
            await asyncio.sleep(0.05)


async def start_capture(
    broker: MosquittoBroker, path: Path, prefix: str, **options: Any
) -> asyncio.Task[CaptureStats]:
    subscribed = asyncio.Event()
    task = asyncio.create_task(
        capture(
            path,
            host=broker.host,
            port=broker.port,
            topics=[f"{prefix}/#"],
            subscribed=subscribed,
            **options,
        )
    )
    async with asyncio.timeout(5):
        await subscribed.wait()
    return task


def read(path: Path) -> list[Record]:
    return list(RecordingReader(path))


async def test_every_published_message_lands_in_the_recording(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    sent = messages(prefix, 40, retain=5)
    path = tmp_path / "capture.csrec"
    before = time.time_ns()
    task = await start_capture(
        mosquitto, path, prefix, max_records=len(sent), metadata={"source": "capture"}
    )
    await publish(mosquitto, sent)
    async with asyncio.timeout(5):
        stats = await task
    await clear_retained(mosquitto, {sent[5][0]})
    records = read(path)
    by_qos = {qos: [(t, p, r) for t, p, q, r in sent if q == qos] for qos in (0, 1, 2)}
    for qos, expected in by_qos.items():  # MQTT orders messages within a QoS level
        assert [(r.topic, r.payload, r.retain) for r in records if r.qos == qos] == expected
    assert (stats.records, stats.protocol) == (len(sent), "MQTT 5")
    assert stats.bytes == sum(len(payload) for _, payload, _, _ in sent)
    assert all(before <= r.t_ns <= time.time_ns() for r in records)
    assert RecordingReader(path).metadata == {"source": "capture"}
    assert sum(r.retain for r in records) == 1


async def test_the_file_is_readable_while_the_capture_runs(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "live.csrec"
    stop = asyncio.Event()
    task = await start_capture(mosquitto, path, prefix, stop=stop, flush_interval=0.1)
    await publish(mosquitto, messages(prefix, 10))
    await until_recorded(path, 10)
    stop.set()
    stats = await task
    assert stats.records == 10


async def test_duration_ends_a_quiet_capture_with_a_valid_empty_recording(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "quiet.csrec"
    stats = await capture(
        path, host=mosquitto.host, port=mosquitto.port, topics=[f"{prefix}/#"], duration=0.3
    )
    assert stats.records == 0
    assert 0.25 <= stats.wall_seconds <= 5
    assert read(path) == []


async def test_cancelling_closes_the_recording_and_append_continues_it(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "twice.csrec"
    task = await start_capture(mosquitto, path, prefix, metadata={"run": 1})
    await publish(mosquitto, messages(prefix, 3))
    await until_recorded(path, 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    task = await start_capture(mosquitto, path, prefix, append=True, max_records=2)
    await publish(mosquitto, messages(prefix, 2))
    await task
    summary = summarize(path)
    assert (summary.records, summary.truncated_bytes) == (5, 0)
    assert summary.metadata == {"run": 1}


async def test_an_mqtt_3_broker_is_captured_without_live_retain_flags(tmp_path: Path) -> None:
    """amqtt (the demo's embedded broker) speaks MQTT 3.1.1 only: capture falls back."""
    port = free_port()
    async with embedded_broker("127.0.0.1", port):
        subscribed = asyncio.Event()
        task = asyncio.create_task(
            capture(
                tmp_path / "amqtt.csrec",
                host="127.0.0.1",
                port=port,
                topics=["legacy/#"],
                max_records=3,
                subscribed=subscribed,
            )
        )
        async with asyncio.timeout(5):
            await subscribed.wait()
            async with aiomqtt.Client("127.0.0.1", port) as client:
                for i in range(3):
                    await client.publish(f"legacy/{i}", bytes([i]), qos=1)
            stats = await task
    assert stats.protocol == "MQTT 3.1.1"
    assert [r.payload for r in read(tmp_path / "amqtt.csrec")] == [b"\x00", b"\x01", b"\x02"]


async def test_an_unreachable_broker_is_a_capture_error_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nothing.csrec"
    with pytest.raises(CaptureError, match="cannot capture"):
        await capture(path, host="127.0.0.1", port=free_port(), duration=5)
    assert not path.exists()


def citysense(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "citysense.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


async def probe_until_captured(broker: MosquittoBroker, path: Path, topic: str) -> int:
    """Publish probes until the capture's file holds one: then it is surely subscribed."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        while True:
            if count := recorded(path):
                return count
            await client.publish(topic, b"probe", qos=1)
            await asyncio.sleep(0.1)


async def test_cli_record_captures_until_sigterm_and_summarises(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "cli.csrec"
    topics = f"{prefix}/#"
    process = citysense("record", str(path), "--mqtt-port", str(mosquitto.port), "--topic", topics)
    async with asyncio.timeout(10):
        probes = await probe_until_captured(mosquitto, path, f"{prefix}/probe")
        await publish(mosquitto, messages(prefix, 6))
    await until_recorded(path, probes + 6)
    process.send_signal(signal.SIGTERM)
    out, err = await asyncio.to_thread(process.communicate, timeout=10)
    assert process.returncode == 0, err
    assert "captured" in out
    summary = summarize(path)
    assert summary.metadata["broker"] == f"127.0.0.1:{mosquitto.port}"
    assert summary.metadata["topics"] == [topics]
    assert summary.records >= probes + 6


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{exists}"], 2, "exists; pass --append"),
        (["{garbage}", "--append"], 2, "not a citysense recording"),
        (["{fresh}", "--duration", "-1"], 2, "--duration must be positive"),
        (["{fresh}", "--topic", "citysense/#/telemetry"], 2, "invalid MQTT topic filter"),
        (["{fresh}", "--topic", "citysense/st+"], 2, "invalid MQTT topic filter"),
        (["{fresh}", "--mqtt-port", "{closed}"], 2, "cannot capture"),
    ],
)
def test_cli_record_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    paths = {name: tmp_path / f"{name}.csrec" for name in ("exists", "garbage", "fresh")}
    paths["exists"].write_bytes(b"")
    paths["garbage"].write_text("hello\n")
    process = citysense("record", *(arg.format(closed=free_port(), **paths) for arg in args))
    _, err = process.communicate(timeout=30)
    assert process.returncode == code
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not paths["fresh"].exists()


async def test_a_broker_restart_is_bridged_by_reconnecting(prefix: str, tmp_path: Path) -> None:
    path = tmp_path / "restart.csrec"
    first = MosquittoBroker().start()
    try:
        task = await start_capture(first, path, prefix, max_records=4)
        await publish(first, messages(prefix, 2))
        await until_recorded(path, 2)
    finally:
        first.stop()
    with MosquittoBroker(port=first.port) as second:
        async with asyncio.timeout(10):
            while not task.done():
                await publish(second, messages(prefix, 1))
                await asyncio.sleep(0.2)
            stats = await task
    assert stats.reconnects >= 1
    assert stats.records == 4
