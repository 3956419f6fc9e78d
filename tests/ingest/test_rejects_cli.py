"""`citysense rejects list | export | replay` against a real Mosquitto."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from citysense.broker import MosquittoBroker, free_port
from citysense.cli import app
from ingest.dead_letters import JsonlDeadLetters
from tests.center.factories import alert
from tests.factories import T0

runner = CliRunner()


class Listener:
    """Collects what arrives on one station's topics."""

    def __init__(self, broker: MosquittoBroker, station_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listen-{station_id}")
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(
            f"citysense/v1/stations/{station_id}/#", qos=1
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._received
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "the listener never subscribed"

    def _received(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def wait_for(self, count: int, within: float = 10.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + within
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def station() -> str:
    return f"rj-{secrets.token_hex(4)}"


@pytest.fixture
def listener(mosquitto: MosquittoBroker, station: str) -> Iterator[Listener]:
    listener = Listener(mosquitto, station)
    yield listener
    listener.close()


@pytest.fixture
def dead_path(tmp_path: Path, station: str) -> Path:
    path = tmp_path / "dead.jsonl"
    dead = JsonlDeadLetters(path)
    topic = f"citysense/v1/stations/{station}/telemetry"
    dead.write(topic, b'{"v": 1, "broken": ', "not_json", "Expecting value", T0)
    dead.write(topic, b'{"v": 9}', "bad_version", "v=9", T0 + timedelta(minutes=1))
    dead.write("citysense/v1/stations/other/telemetry", b"{}", "bad_schema", "", T0)
    dead.write(f"junk/{station}", b"x", "bad_topic", "outside", T0)
    dead.write_alert(alert(station_id=station), "alert_refused", "unknown class", T0)
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["rejects", *args])
    return result.exit_code, result.output


@pytest.mark.integration
def test_list_prints_a_table_newest_first(dead_path: Path) -> None:
    code, output = run("list", "--dead-letters", str(dead_path), "--reason", "not_json")
    assert code == 0, output
    assert "1 dead letters" in output
    assert "not_json" in output
    assert "bad_version" not in output


@pytest.mark.integration
def test_replay_republishes_the_selected_messages_at_qos_1(
    dead_path: Path, mosquitto: MosquittoBroker, listener: Listener, station: str
) -> None:
    broker = ["--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    code, output = run("replay", "--dead-letters", str(dead_path), "--dry-run", *broker)
    assert code == 0, output
    assert "dry run: 3 to publish, 2 skipped" in output  # alert and bad topic skipped
    assert listener.wait_for(1, within=0.3) == []

    code, output = run("replay", "--dead-letters", str(dead_path), "--station", station, *broker)
    assert code == 0, output
    assert "published 2, skipped 1" in output  # the alert
    topic = f"citysense/v1/stations/{station}/telemetry"
    assert listener.wait_for(2) == [(topic, b'{"v": 1, "broken": '), (topic, b'{"v": 9}')]


@pytest.mark.integration
def test_export_fix_and_replay_from_the_directory(
    dead_path: Path, tmp_path: Path, mosquitto: MosquittoBroker, listener: Listener, station: str
) -> None:
    out = tmp_path / "fix"
    code, output = run(
        "export", "--dead-letters", str(dead_path), "--station", station, "--out", str(out)
    )
    assert code == 0, output
    assert "exported 3 dead letters" in output  # two messages and the alert
    assert sorted(p.name for p in out.iterdir()) == [
        "1.meta.json",
        "1.payload",
        "2.meta.json",
        "2.payload",
        "5.meta.json",
        "5.payload",
    ]
    (out / "1.payload").write_bytes(b'{"v": 1, "fixed": true}')
    (out / "2.meta.json").unlink()  # the operator gave up on this one

    broker = ["--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    code, output = run("replay", "--from", str(out), *broker)
    assert code == 0, output
    assert "published 1, skipped 1" in output
    topic = f"citysense/v1/stations/{station}/telemetry"
    assert listener.wait_for(1) == [(topic, b'{"v": 1, "fixed": true}')]


@pytest.mark.integration
def test_unreachable_broker_exits_2(dead_path: Path) -> None:
    port = str(free_port())
    code, output = run("replay", "--dead-letters", str(dead_path), "--mqtt-port", port)
    assert code == 2
    assert "cannot connect to the broker" in output


def test_bad_since_exits_2(dead_path: Path) -> None:
    code, output = run("list", "--dead-letters", str(dead_path), "--since", "yesterday")
    assert code == 2
    assert "not an ISO 8601 time" in output
