"""Replay through the real Mosquitto: order, payloads, flags, timing, errors, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from citysense.broker import MosquittoBroker, free_port
from recording.format import Record, RecordingError, RecordingWriter
from recording.replay import ReplayError, replay

pytestmark = pytest.mark.integration

SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z


@pytest.fixture
def prefix() -> str:
    return f"test/replay/{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def subscriber(broker: MosquittoBroker, prefix: str) -> AsyncIterator[aiomqtt.Client]:
    """An MQTT 5 subscriber that sees retain flags and QoS as published."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"test-{uuid.uuid4().hex}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        options = SubscribeOptions(qos=2, retainAsPublished=True)
        await client.subscribe(f"{prefix}/#", options=options)
        yield client


async def received(client: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    async with asyncio.timeout(10):
        return [await anext(client.messages) for _ in range(count)]


def traffic(prefix: str, count: int, step_ns: int, qos: int | None = None) -> list[Record]:
    """Binary payloads, a few retained messages, mixed QoS unless one is given."""
    return [
        Record(
            T0 + i * step_ns,
            f"{prefix}/stations/st-{i % 4}/telemetry",
            i.to_bytes(2, "big") + bytes(range(i % 7)),
            qos=i % 3 if qos is None else qos,
            retain=i % 10 == 0,
        )
        for i in range(count)
    ]


def write(path: Path, records: list[Record]) -> Path:
    with RecordingWriter(path, {"source": "test"}) as writer:
        for record in records:
            writer.write(record)
    return path


async def clear_retained(broker: MosquittoBroker, records: list[Record]) -> None:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        for topic in {r.topic for r in records if r.retain}:
            await client.publish(topic, b"", qos=1, retain=True)


async def test_every_record_arrives_in_order_with_its_payload_and_flags(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    records = traffic(prefix, 60, step_ns=SECOND, qos=1)
    path = write(tmp_path / "run.csrec", records)
    async with subscriber(mosquitto, prefix) as client:
        stats = await replay(path, host=mosquitto.host, port=mosquitto.port, speed=None)
        messages = await received(client, len(records))
    await clear_retained(mosquitto, records)
    assert [(m.topic.value, m.payload, m.retain) for m in messages] == [
        (r.topic, r.payload, r.retain) for r in records
    ]
    assert stats.records == len(records)
    assert stats.bytes == sum(len(r.payload) for r in records)
    assert stats.span_seconds == pytest.approx(59.0)


async def test_each_qos_level_is_kept_and_ordered_within_itself(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    """MQTT orders messages per QoS level only: Mosquitto forwards QoS 2 after PUBREL."""
    records = traffic(prefix, 60, step_ns=1)
    path = write(tmp_path / "mixed.csrec", records)
    async with subscriber(mosquitto, prefix) as client:
        await replay(path, host=mosquitto.host, port=mosquitto.port, speed=None)
        messages = await received(client, len(records))
    await clear_retained(mosquitto, records)
    for qos in (0, 1, 2):
        assert [(m.payload, m.retain) for m in messages if m.qos == qos] == [
            (r.payload, r.retain) for r in records if r.qos == qos
        ]


async def test_speed_ten_plays_two_seconds_in_about_a_fifth(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    records = [
        Record(T0 + i * SECOND // 10, f"{prefix}/t", str(i).encode(), qos=1) for i in range(21)
    ]
    path = write(tmp_path / "two-seconds.csrec", records)
    async with subscriber(mosquitto, prefix) as client:
        started = time.monotonic()
        stats = await replay(path, host=mosquitto.host, port=mosquitto.port, speed=10)
        elapsed = time.monotonic() - started
        messages = await received(client, len(records))
    assert 0.15 <= elapsed <= 1.5
    assert 0.15 <= stats.wall_seconds <= 1.5
    assert [m.payload for m in messages] == [r.payload for r in records]


async def test_out_of_order_times_go_out_in_file_order_without_waiting(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    times = [0, 5, 1, 2, 6]  # tenths of a second: the capture interleaved
    records = [Record(T0 + t * SECOND // 10, f"{prefix}/t", bytes([t])) for t in times]
    path = write(tmp_path / "interleaved.csrec", records)
    async with subscriber(mosquitto, prefix) as client:
        stats = await replay(path, host=mosquitto.host, port=mosquitto.port, speed=1)
        messages = await received(client, len(records))
    assert [m.payload for m in messages] == [bytes([t]) for t in times]
    assert 0.5 <= stats.wall_seconds <= 2.0
    assert stats.late_records_max_lag_s < 0.3  # 5 → 1 would lag 0.4 s if counted late


async def test_qos_override_and_progress_reports(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    records = [Record(T0 + i, f"{prefix}/t", b"x", qos=0) for i in range(50)]
    path = write(tmp_path / "qos0.csrec", records)
    reports: list[tuple[int, int]] = []
    async with subscriber(mosquitto, prefix) as client:
        await replay(
            path,
            host=mosquitto.host,
            port=mosquitto.port,
            speed=None,
            qos_override=1,
            progress=lambda done, total: reports.append((done, total)),
        )
        messages = await received(client, len(records))
    assert {m.qos for m in messages} == {1}
    assert reports[-1] == (50, 50)


async def test_a_torn_tail_is_skipped_and_reported(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "torn.csrec", traffic(prefix, 5, step_ns=1))
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 3)
    stats = await replay(path, host=mosquitto.host, port=mosquitto.port, speed=None)
    await clear_retained(mosquitto, traffic(prefix, 5, step_ns=1))
    assert stats.records == 4
    assert stats.truncated_bytes > 0


async def test_an_empty_recording_replays_nothing(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    stats = await replay(write(tmp_path / "empty.csrec", []), host="127.0.0.1", port=mosquitto.port)
    assert (stats.records, stats.bytes, stats.span_seconds) == (0, 0, 0.0)


async def test_errors_are_our_own(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    path = write(tmp_path / "run.csrec", traffic("test/replay/errors", 2, step_ns=1))
    with pytest.raises(ReplayError, match="cannot connect"):
        await replay(path, host="127.0.0.1", port=free_port(), speed=None)
    garbage = tmp_path / "garbage.csrec"
    garbage.write_bytes(b"not a recording")
    with pytest.raises(RecordingError):
        await replay(garbage, host=mosquitto.host, port=mosquitto.port)
    with pytest.raises(ValueError, match="speed"):
        await replay(path, host=mosquitto.host, port=mosquitto.port, speed=1001)


def citysense(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "citysense.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_cli_info_describes_a_recording_without_a_broker(tmp_path: Path) -> None:
    prefix = "citysense/v1/stations"
    records = [
        Record(T0 + i * SECOND, f"{prefix}/st-{i % 3}/telemetry", b"{}", retain=i == 0)
        for i in range(9)
    ]
    path = write(tmp_path / "city.csrec", records)
    result = citysense("replay", str(path), "--info", "--mqtt-port", "1")
    assert result.returncode == 0, result.stderr
    assert "9 messages" in result.stdout
    assert "1 retained" in result.stdout
    assert "source: test" in result.stdout
    assert "2026-01-01T00:00:00+00:00" in result.stdout
    assert "citysense/v1/stations/+/telemetry" in result.stdout


def test_cli_replays_through_the_broker(
    mosquitto: MosquittoBroker, prefix: str, tmp_path: Path
) -> None:
    path = write(tmp_path / "run.csrec", [Record(T0 + i, f"{prefix}/t", b"x") for i in range(20)])
    result = citysense(
        "replay", str(path), "--mqtt-port", str(mosquitto.port), "--as-fast-as-possible"
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 20 messages" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--info"], "cannot open"),
        (["{garbage}", "--info"], "not a citysense recording"),
        (["{good}", "--speed", "0"], "--speed must be in"),
        (["{good}", "--speed", "1001"], "--speed must be in"),
        (["{good}", "--speed", "2", "--as-fast-as-possible"], "either"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    paths = {
        "missing": tmp_path / "missing.csrec",
        "garbage": tmp_path / "garbage.csrec",
        "good": write(tmp_path / "good.csrec", []),
    }
    paths["garbage"].write_text("hello\n")
    result = citysense("replay", *(arg.format(**paths) for arg in args), "--mqtt-port", "1")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


async def test_a_broker_that_goes_away_mid_replay_is_a_replay_error(tmp_path: Path) -> None:
    records = [Record(T0 + i * SECOND // 10, "test/replay/gone", b"x") for i in range(50)]
    path = write(tmp_path / "five-seconds.csrec", records)
    with MosquittoBroker() as broker:
        task = asyncio.create_task(replay(path, host=broker.host, port=broker.port, speed=1))
        await asyncio.sleep(0.5)
    with pytest.raises(ReplayError, match="connection"):
        async with asyncio.timeout(5):
            await task
