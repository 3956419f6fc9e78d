"""The broker benchmarks, run tiny against the test broker (no timing asserted)."""

from __future__ import annotations

import pytest

from bench.broker_rate import measure_publisher
from bench.load import measure_loadgen
from bench.loadgen import LoadSpec
from citysense.broker import MosquittoBroker

pytestmark = pytest.mark.integration


def test_raw_rate_counts_what_the_subscriber_received(mosquitto: MosquittoBroker) -> None:
    raw = measure_publisher(mosquitto.host, mosquitto.port, style="paho_manual", qos=1, seconds=0.3)
    assert raw.name == "broker_raw_qos1"
    assert raw.figures["received_messages"] == raw.figures["published_messages"] > 1
    assert raw.figures["lost_messages"] == raw.figures["errors"] == 0
    assert raw.figures["messages_per_s"] > 0


def test_loadgen_measurement_reports_sent_and_received(mosquitto: MosquittoBroker) -> None:
    spec = LoadSpec(
        mosquitto.host,
        mosquitto.port,
        stations=4,
        rate=None,
        batch=10,
        qos=1,
        processes=2,
        duration=None,
        total_readings=400,
        station_prefix="bench",
    )
    measured = measure_loadgen("loadgen_tiny", spec)
    assert measured.figures["messages"] == 40
    assert measured.figures["lost_messages"] == measured.figures["errors"] == 0
    assert measured.params["rate"] == "max"
    assert "host" not in measured.params
