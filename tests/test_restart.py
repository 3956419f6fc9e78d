"""``citysense serve`` killed with SIGKILL in the middle of an incident and started again: the
incident stays one case, and that case clears when the sensor recovers.

The rules engine's state comes back from its last checkpoint, the journal after it, and the cases
the store holds open; the parametrisations kill it after a checkpoint has seen the case open,
before any checkpoint (the journal replays the opening), and before any checkpoint with no journal
configured (only the store knows the case).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from citysense.broker import MosquittoBroker
from tests.serve_process import NumberedEdge, api, serve, serve_env

pytestmark = pytest.mark.integration


def wait_for(check: Callable[[], Any], within: float, *, station: NumberedEdge, tilt: float) -> Any:
    """Keep the station reporting ``tilt`` every 0.2 s until ``check`` is true."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        report(station, tilt)
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{check.__name__} not true within {within}s")


def report(station: NumberedEdge, tilt: float) -> None:
    station.publish(tilt)
    station.flush()


@pytest.mark.parametrize(
    ("snapshot_every", "journal"),
    [("0.2", "journal"), ("3600", "journal"), ("3600", "none")],
    ids=["checkpoint-saw-it", "journal-replayed", "store-only"],
)
def test_kill_mid_incident_restart_one_case_cleared_on_recovery(
    mosquitto: MosquittoBroker, tmp_path: Path, snapshot_every: str, journal: str
) -> None:
    env = serve_env(
        mosquitto,
        tmp_path,
        CITYSENSE_INGEST_SNAPSHOT_PATH=str(tmp_path / "rules.snapshot"),
        CITYSENSE_INGEST_SNAPSHOT_EVERY_S=snapshot_every,
        CITYSENSE_SINK_RECORDER_DIR=str(tmp_path / journal) if journal != "none" else "none",
    )
    station = NumberedEdge(mosquitto, "st-restart", covers=1, realtime=True)

    def opened() -> Any:
        page = api(env, "/api/v1/cases")
        return page if page["total"] else None

    def cleared() -> Any:
        page = api(env, "/api/v1/cases")
        return page if any(c["status"] == "cleared" for c in page["items"]) else None

    def connected() -> bool:
        return bool(api(env, "/api/v1/health")["mqtt_connected"])

    try:
        with serve(env) as first:
            wait_for(opened, 30, station=station, tilt=75.0)
            time.sleep(0.6)  # a snapshot (every 0.2 s) sees the case open
            first.send_signal(signal.SIGKILL)
        for _ in range(5):  # the incident goes on while ingest is down; the broker queues it
            report(station, 75.0)
            time.sleep(0.2)
        assert (tmp_path / "rules.snapshot").exists() is (snapshot_every == "0.2")
        with serve(env):
            wait_for(connected, 30, station=station, tilt=75.0)
            for _ in range(10):  # still open after the restart: no second case
                report(station, 75.0)
                time.sleep(0.2)
            assert opened()["total"] == 1
            page = wait_for(cleared, 30, station=station, tilt=1.0)
            time.sleep(1.0)
            page = api(env, "/api/v1/cases")
    finally:
        station.close()
    assert page["total"] == 1, page
    (case,) = page["items"]
    assert case["sensor_id"] == station.sensors[0]
    assert case["status"] == "cleared"
