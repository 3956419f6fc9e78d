"""The shipped agent (``citysense edge`` with a state directory) against a real Mosquitto:
``kill -9`` mid-stream, twice within a second, loses and doubles nothing, and every start is a
new boot. Counted from what a subscriber received and what the outbox still holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from citysense.broker import MosquittoBroker
from edge.outbox_sqlite import SqliteOutbox
from simulator import build_city

STATION = build_city(seed=7).stations[0].station_id


class Received:
    """Every message under the station's topics, from a QoS 1 subscriber."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.lock = threading.Lock()
        self.batches: list[dict[str, object]] = []
        self.births: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watch-durability")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"citysense/v1/stations/{STATION}/#", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self.lock:
            if message.topic.endswith("/telemetry"):
                self.batches.append(body)
            elif message.topic.endswith("/state") and body["status"] == "online":
                self.births.append(body["boot_epoch"])

    def close(self) -> None:
        self.client.disconnect()  # the loop still runs: it closes the socket
        self.client.loop_stop()


@pytest.fixture
def broker() -> Iterator[MosquittoBroker]:
    """A private broker: this test stops it for a while."""
    with MosquittoBroker() as private:
        yield private


@pytest.fixture
def received(broker: MosquittoBroker) -> Iterator[Received]:
    watcher = Received(broker)
    time.sleep(0.2)
    yield watcher
    watcher.close()


def start_agent(broker: MosquittoBroker, state: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CITYSENSE_EDGE_STATE_DIR": str(state),
        "CITYSENSE_EDGE_REPORT__ENABLED": "false",  # every sample goes out: easy to count
        "CITYSENSE_EDGE_MAX_BATCH": "20",
    }
    command = [sys.executable, "-m", "citysense.cli", "edge", STATION]
    with log.open("ab") as errors:
        return subprocess.Popen(
            [*command, "--mqtt-port", str(broker.port), "--interval", "0.05"],
            env=env,
            stderr=errors,
        )


def test_kill_9_twice_within_a_second_loses_and_doubles_nothing(
    broker: MosquittoBroker, received: Received, tmp_path: Path
) -> None:
    state, log = tmp_path / "edge", tmp_path / "edge.log"
    agent = start_agent(broker, state, log)
    time.sleep(3.0)
    broker.signal(signal.SIGSTOP)  # no PUBACK comes: the window fills with batches in flight
    time.sleep(0.5)
    agent.send_signal(signal.SIGKILL)  # mid-stream
    agent.wait()
    broker.signal(signal.SIGCONT)  # it reads what the dead agent sent, and delivers it
    agent = start_agent(broker, state, log)
    time.sleep(0.6)
    agent.send_signal(signal.SIGKILL)  # again, within a second of the restart
    agent.wait()
    agent = start_agent(broker, state, log)
    time.sleep(3.0)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0, log.read_text()
    time.sleep(0.5)

    with received.lock:
        batches, births = list(received.batches), list(received.births)
    outbox = SqliteOutbox(state / "outbox.sqlite", boot_epoch=0)
    try:
        waiting = set(outbox.resend(0, max(outbox.stats.next_seq - 1, 0)).pending)
        sealed = outbox.stats.next_seq
    finally:
        outbox.close()

    by_seq: dict[int, tuple[int, str]] = {}
    owner: dict[tuple[str, str], int] = {}
    for batch in batches:
        key = (batch["boot_epoch"], json.dumps(batch["readings"]))
        seq = batch["seq"]
        assert isinstance(seq, int)
        assert by_seq.setdefault(seq, key) == key, f"seq {seq} re-sent with other contents"
        for reading in batch["readings"]:  # type: ignore[attr-defined]
            name = (reading["sensor_id"], reading["ts"])
            assert owner.setdefault(name, seq) == seq, f"{name} sent in two batches"
    assert len(by_seq) > 20
    lost = set(range(sealed)) - set(by_seq) - waiting
    assert not lost, f"sealed batches neither received nor waiting: {sorted(lost)[:10]}"
    boots = [boot for boot, _ in by_seq.values()]
    assert len(set(boots)) >= 2  # batches sealed before and after the kills
    assert len(births) >= 2, births
    assert births == sorted(set(births)), births  # a new, greater boot on every start
