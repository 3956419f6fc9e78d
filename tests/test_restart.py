"""``citysense serve`` killed with SIGKILL in the middle of an incident and started again: the
incident stays one case, and that case clears when the sensor recovers.

The rules engine's state comes back from its last snapshot and from the cases the store holds
open; the two parametrisations kill it after a snapshot has seen the case open, and before any
snapshot was written (only the store knows the case).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from citysense.broker import MosquittoBroker, free_port
from protocol import (
    Channel,
    Reading,
    SensorKind,
    StationState,
    StationTopic,
    TelemetryBatch,
    encode,
)
from tests import serve_process
from tests.factories import cover_info
from tests.serve_process import serve

QUICK_RULES = Path(__file__).parent / "data" / "quick_rules.yaml"
STATION = "st-restart"
SENSOR = f"{STATION}.cover-01"

pytestmark = pytest.mark.integration


class Station:
    """Publishes one cover's readings as an edge agent would (QoS 1, one batch per call)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{STATION}")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.seq = 0
        birth = StationState(
            station_id=STATION,
            status="online",
            boot_epoch=1,
            ts=datetime.now(UTC),
            sensors=[cover_info(SENSOR)],
        )
        topic = str(StationTopic(STATION, Channel.STATE))
        self.client.publish(topic, encode(birth), qos=1, retain=True).wait_for_publish(5)

    def report(self, tilt: float) -> None:
        now = datetime.now(UTC)
        batch = TelemetryBatch(
            station_id=STATION,
            boot_epoch=1,
            seq=self.seq,
            sent_at=now,
            readings=[
                Reading(sensor_id=SENSOR, kind=SensorKind.COVER, ts=now, values={"tilt_deg": tilt})
            ],
        )
        self.seq += 1
        topic = str(StationTopic(STATION, Channel.TELEMETRY))
        self.client.publish(topic, encode(batch), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def api(port: int, path: str) -> Any:
    return serve_process.api({"CITYSENSE_CENTER_PORT": str(port)}, path)


def wait_for(check: Callable[[], Any], within: float, *, station: Station, tilt: float) -> Any:
    """Keep the station reporting ``tilt`` every 0.2 s until ``check`` is true."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        station.report(tilt)
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{check.__name__} not true within {within}s")


@pytest.mark.parametrize("snapshot_every", ["0.2", "3600"], ids=["snapshot-saw-it", "store-only"])
def test_kill_mid_incident_restart_one_case_cleared_on_recovery(
    mosquitto: MosquittoBroker, tmp_path: Path, snapshot_every: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CITYSENSE_INGEST_MQTT_PORT": str(mosquitto.port),
        "CITYSENSE_INGEST_CLIENT_ID": f"ingest-restart-{port}",
        "CITYSENSE_INGEST_DEAD_LETTER_PATH": str(tmp_path / "dead.jsonl"),
        "CITYSENSE_INGEST_RULES_PATH": str(QUICK_RULES),
        "CITYSENSE_INGEST_ALLOWED_LATENESS_S": "0.3",
        "CITYSENSE_INGEST_SNAPSHOT_PATH": str(tmp_path / "rules.snapshot"),
        "CITYSENSE_SINK_RECORDER_DIR": str(tmp_path / "journal"),
        "CITYSENSE_INGEST_SNAPSHOT_EVERY_S": snapshot_every,
        "CITYSENSE_CENTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}",
        "CITYSENSE_CENTER_PORT": str(port),
    }
    station = Station(mosquitto)

    def opened() -> Any:
        page = api(port, "/api/v1/cases")
        return page if page["total"] else None

    def cleared() -> Any:
        page = api(port, "/api/v1/cases")
        return page if any(c["status"] == "cleared" for c in page["items"]) else None

    def connected() -> bool:
        return bool(api(port, "/healthz")["mqtt_connected"])

    try:
        with serve(env) as first:
            wait_for(opened, 30, station=station, tilt=75.0)
            time.sleep(0.6)  # a snapshot (every 0.2 s) sees the case open
            first.send_signal(signal.SIGKILL)
        for _ in range(5):  # the incident goes on while ingest is down; the broker queues it
            station.report(75.0)
            time.sleep(0.2)
        assert (tmp_path / "rules.snapshot").exists() is (snapshot_every == "0.2")
        with serve(env):
            wait_for(connected, 30, station=station, tilt=75.0)
            for _ in range(10):  # still open after the restart: no second case
                station.report(75.0)
                time.sleep(0.2)
            assert opened()["total"] == 1
            page = wait_for(cleared, 30, station=station, tilt=1.0)
            time.sleep(1.0)
            page = api(port, "/api/v1/cases")
    finally:
        station.close()
    assert page["total"] == 1, page
    (case,) = page["items"]
    assert case["sensor_id"] == SENSOR
    assert case["status"] == "cleared"
