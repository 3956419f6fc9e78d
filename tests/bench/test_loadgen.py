from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.loadgen import (
    LoadSpec,
    ShareStats,
    StationStream,
    TokenBucket,
    combine,
    run_load,
    share_of,
    station_id,
)
from citysense.broker import MosquittoBroker
from protocol import Channel, SensorKind, StationTopic, TelemetryBatch, decode_telemetry

NOW_US = 1_782_900_000_000_000


def decoded(stream: StationStream, now_us: int = NOW_US) -> TelemetryBatch:
    return decode_telemetry(StationTopic.parse(stream.topic), stream.next_payload(now_us))


def test_payloads_decode_as_telemetry_of_their_station() -> None:
    stream = StationStream("lg-0001", boot_epoch=77, batch_size=21)
    batch = decoded(stream)
    assert (batch.station_id, batch.boot_epoch, batch.seq) == ("lg-0001", 77, 0)
    assert len(batch.readings) == 21
    assert {r.kind for r in batch.readings} == set(SensorKind)
    assert all(r.sensor_id.startswith("lg-0001.") for r in batch.readings)
    assert batch.sent_at >= max(r.ts for r in batch.readings)


def test_readings_carry_plausible_values() -> None:
    stream = StationStream("lg-0002", boot_epoch=1, batch_size=1000)
    readings = [r for _ in range(3) for r in decoded(stream).readings]
    by_kind = defaultdict(list)
    for reading in readings:
        by_kind[reading.kind].append(reading.values)
    assert all(0 <= v["tilt_deg"] < 3 for v in by_kind[SensorKind.COVER])
    assert all(0.14 <= v["pressure_mpa"] <= 0.45 for v in by_kind[SensorKind.PRESSURE])
    assert all(0 <= v["tilt_deg"] < 1 for v in by_kind[SensorKind.POLE])
    assert len({v["tilt_deg"] for v in by_kind[SensorKind.COVER]}) > 10


def test_seqs_are_consecutive_and_every_sensor_moves_forward_in_event_time() -> None:
    stream = StationStream("lg-0003", boot_epoch=5, batch_size=10)
    batches = [decoded(stream, NOW_US) for _ in range(20)]  # a clock that does not move
    assert [b.seq for b in batches] == list(range(20))
    last_ts: dict[str, datetime] = {}
    for reading in (r for b in batches for r in b.readings):
        previous = last_ts.get(reading.sensor_id)
        assert previous is None or reading.ts > previous
        last_ts[reading.sensor_id] = reading.ts


def test_batch_size_is_checked_against_the_protocol() -> None:
    with pytest.raises(ValueError, match="batch size"):
        StationStream("lg-0001", 1, 1001)


def test_shares_cover_every_station_once_and_split_rate_and_total() -> None:
    spec = LoadSpec(
        "127.0.0.1", 1, stations=10, rate=1000.0, batch=7, processes=3, total_readings=1000
    )
    shares = [share_of(spec, worker) for worker in range(3)]
    indexes = [i for stations, _, _ in shares for i in stations]
    assert indexes == list(range(10))
    assert len({station_id(i) for i in indexes}) == 10
    assert sum(rate or 0 for _, rate, _ in shares) == pytest.approx(1000.0)
    assert sum(messages or 0 for _, _, messages in shares) == 143  # ⌈1000 / 7⌉


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"duration": None}, "bound the run"),
        ({"processes": 11}, "processes"),
        ({"qos": 2}, "qos"),
        ({"rate": 0.0}, "rate"),
        ({"batch": 0}, "batch size"),
    ],
)
def test_spec_refuses_what_cannot_run(changes: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {"host": "127.0.0.1", "port": 1, "stations": 10, **changes}
    with pytest.raises(ValueError, match=problem):
        LoadSpec(**arguments)  # type: ignore[arg-type]


def test_token_bucket_grants_its_rate_plus_its_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=5.0, now=0.0)
    granted, now = 0, 0.0
    for _ in range(100_000):
        wait = bucket.delay(now)
        if wait == 0:
            granted += 1
        now += 0.0001 if wait == 0 else wait
        if now >= 10.0:
            break
    assert 1000 <= granted <= 1001 + 5


def test_token_bucket_does_not_save_up_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=5.0, now=0.0)
    granted = sum(1 for _ in range(50) if bucket.delay(60.0) == 0)
    assert granted == 5


def test_combined_stats_are_consistent() -> None:
    spec = LoadSpec("127.0.0.1", 1, stations=4, rate=None, batch=10, processes=2, duration=1.0)
    stats = combine(
        spec, [ShareStats(30, 3000, 1, 10.0, 12.0), ShareStats(20, 2000, 0, 10.5, 13.0)]
    )
    assert (stats.messages, stats.readings, stats.bytes, stats.errors) == (50, 500, 5000, 1)
    assert stats.seconds == pytest.approx(3.0)
    assert stats.achieved_readings_per_s == pytest.approx(500 / 3.0)
    assert stats.messages_per_s == pytest.approx(50 / 3.0)
    assert (stats.processes, stats.qos, stats.batch_size) == (2, 1, 10)
    assert json.loads(stats.to_json())["readings"] == 500


@dataclass
class Collector:
    """Collects telemetry payloads of the stations whose id starts with ``prefix``."""

    prefix: str
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        if StationTopic.parse(message.topic).station_id.startswith(self.prefix):
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(self, count: int, limit_s: float = 10.0) -> None:
        deadline = time.monotonic() + limit_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def collector(mosquitto: MosquittoBroker) -> Iterator[Collector]:
    found = Collector(prefix=f"t{uuid.uuid4().hex[:6]}")
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = found.on_message
    client.on_subscribe = lambda *_args: found.subscribed.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(StationTopic.subscription(Channel.TELEMETRY), qos=1)
    client.loop_start()
    assert found.subscribed.wait(10)
    yield found
    client.disconnect()
    client.loop_stop()


@pytest.mark.integration
def test_every_qos1_message_of_a_multi_process_run_reaches_a_subscriber(
    mosquitto: MosquittoBroker, collector: Collector
) -> None:
    spec = LoadSpec(
        mosquitto.host,
        mosquitto.port,
        stations=6,
        rate=None,
        batch=25,
        qos=1,
        processes=2,
        duration=None,
        total_readings=3000,
        station_prefix=collector.prefix,
    )
    stats = run_load(spec)
    collector.wait_for(stats.messages)

    assert (stats.messages, stats.readings, stats.errors) == (120, 3000, 0)
    assert len(collector.messages) == stats.messages
    assert stats.bytes == sum(len(payload) for _, payload in collector.messages)
    seqs: dict[tuple[str, int], list[int]] = defaultdict(list)
    for topic, payload in collector.messages:
        batch = decode_telemetry(StationTopic.parse(topic), payload)
        assert len(batch.readings) == 25
        seqs[batch.station_id, batch.boot_epoch].append(batch.seq)
    assert len(seqs) == 6
    assert len({station for station, _ in seqs}) == 6
    assert len({boot for _, boot in seqs}) == 6
    assert all(sorted(s) == list(range(len(s))) for s in seqs.values())


@pytest.mark.integration
def test_a_paced_run_stops_by_itself_within_its_rate(
    mosquitto: MosquittoBroker, collector: Collector
) -> None:
    spec = LoadSpec(
        mosquitto.host,
        mosquitto.port,
        stations=4,
        rate=2000.0,
        batch=10,
        qos=0,
        processes=2,
        duration=0.5,
        station_prefix=collector.prefix,
    )
    stats = run_load(spec)
    collector.wait_for(stats.messages)
    # 2000 readings/s for 0.5 s in batches of 10, plus each process's burst allowance
    assert 0 < stats.messages <= 100 + 2 * 5
    assert stats.readings == stats.messages * 10
    assert stats.target_readings_per_s == 2000.0
    assert len(collector.messages) == stats.messages


@pytest.mark.integration
def test_command_line_prints_the_stats_as_json(mosquitto: MosquittoBroker) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(mosquitto.port),
            "--stations",
            "2",
            "--rate",
            "max",
            "--batch",
            "5",
            "--processes",
            "1",
            "--duration",
            "0",
            "--total-readings",
            "50",
            "--station-prefix",
            "cli",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    stats = json.loads(done.stdout)
    assert (stats["readings"], stats["messages"], stats["errors"]) == (50, 10, 0)
    assert stats["target_readings_per_s"] is None


def test_a_run_without_a_broker_fails_with_the_reason() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            "1",
            "--processes",
            "1",
            "--stations",
            "1",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot connect to 127.0.0.1:1" in done.stderr
