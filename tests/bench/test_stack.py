"""The whole-stack benchmarks, run tiny against the test broker and VictoriaMetrics (no timing
asserted): they work, name their baselines and write the profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.acceptance import MAX_QUEUED, StackPlan, measure_stack
from bench.hotspots import from_collapsed
from bench.latency import percentile
from bench.stack import Services
from citysense.broker import MosquittoBroker
from tests.conftest import VictoriaMetrics

TINY = StackPlan(
    messages_b100=40,
    messages_b1=100,
    profile_messages=40,
    latency_seconds=0.5,
    latency_every_s=0.1,
    sparse_latency_seconds=0.5,
    sparse_every_s=0.25,
    fleet_stations=300,
)


@pytest.mark.integration
def test_whole_stack_measurements_run_tiny(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    with MosquittoBroker() as broker:  # its own: no retained births of other tests to drain
        services = Services(broker.host, broker.port, victoria.url)
        measured = {m.name: m for m in measure_stack(TINY, services, tmp_path)}
    assert list(measured) == [
        "drain_mosquitto_sub_b100",
        "drain_paho_b100",
        "drain_session_b100",
        "node_drain_b100",
        "drain_mosquitto_sub_b1",
        "drain_paho_b1",
        "drain_session_b1",
        "node_drain_b1",
        "node_profile_b100",
        "drain_mosquitto_sub_b100_fleet",
        "drain_paho_b100_fleet",
        "drain_session_b100_fleet",
        "node_drain_b100_fleet",
        "node_case_latency",
        "node_case_latency_sparse",
    ]
    for batch, messages in ((100, TINY.messages_b100), (1, TINY.messages_b1)):
        node = measured[f"node_drain_b{batch}"]
        assert node.figures["messages"] == messages
        assert node.figures["readings"] == messages * batch
        assert node.figures["node_cpu_s_per_1000_readings"] > 0
        assert {r.baseline for r in node.ratios} == {
            f"drain_mosquitto_sub_b{batch}",
            f"drain_paho_b{batch}",
        }
        for baseline in ("drain_mosquitto_sub", "drain_paho", "drain_session"):
            assert measured[f"{baseline}_b{batch}"].figures["lost_messages"] == 0
        assert {r.baseline for r in measured[f"drain_session_b{batch}"].ratios} == {
            f"drain_mosquitto_sub_b{batch}",
            f"drain_paho_b{batch}",
        }
    fleet = measured["node_drain_b100_fleet"]
    assert fleet.params["stations"] == 300
    assert fleet.figures["messages"] == TINY.messages_b100
    assert {r.baseline for r in fleet.ratios} == {
        "drain_mosquitto_sub_b100_fleet",
        "drain_paho_b100_fleet",
    }
    for name, every_s in (("node_case_latency", 0.1), ("node_case_latency_sparse", 0.25)):
        latency = measured[name]
        assert latency.params["incident_every_s"] == every_s
        assert latency.figures["cases_seen"] == latency.figures["incidents"] > 0
        assert latency.figures["p50_ms"] <= latency.figures["p99_ms"] <= latency.figures["max_ms"]
    assert (tmp_path / "ingest-profile.txt").read_text().startswith("# ")


def test_a_phase_must_fit_the_brokers_queue() -> None:
    with pytest.raises(ValueError, match="max_queued_messages"):
        StackPlan(MAX_QUEUED + 1, 1, 1, 1.0, 0.1)


def test_hotspots_from_collapsed_stacks() -> None:
    found = from_collapsed(
        "main (a.py:1);handle (ingest/pipeline.py:10);decode (protocol/codec.py:5) 3\n"
        "main (a.py:1);handle (ingest/pipeline.py:12) 1\n"
        "_bootstrap (threading.py:9);post (ingest/sinks/victoria.py:40) 4\n",
        "test",
    )
    assert found.samples == 8
    assert found.top_self[0] == ("post (ingest/sinks/victoria.py)", 0.5)
    assert ("handle (ingest/pipeline.py)", 0.5) in found.top_inclusive
    assert all("threading.py" not in name for name, _ in found.top_inclusive)


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0
