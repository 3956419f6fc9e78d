"""A scenario replayed through the real broker and the pipeline at x10 and x100 opens the same
cases: same sensors, classes and event-time starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from citysense.broker import MosquittoBroker
from recording.replay import replay
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from tests.node_harness import node_client, serving_node

pytestmark = pytest.mark.integration
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "replay-check.yaml"
Case = tuple[str, str, str, str]


async def _replay_through_node(
    recording: Path, broker: MosquittoBroker, speed: float, tmp: Path
) -> list[Case]:
    async with serving_node(broker, tmp) as node:
        await asyncio.wait_for(node.consumer.connected.wait(), timeout=10)
        stats = await replay(recording, host=broker.host, port=broker.port, speed=speed)
        counter = node.pipeline.metrics.registry.get_sample_value
        telemetry = stats.records - _state_records(recording)

        def consumed() -> float:
            names = ("citysense_ingest_batches_total", "citysense_ingest_duplicate_batches_total")
            return sum(counter(name) or 0 for name in names)

        async with asyncio.timeout(30):
            while consumed() < telemetry:  # noqa: ASYNC110 (polls ingest's counters)
                await asyncio.sleep(0.05)
        async with await node_client(node) as http:
            items = (await http.get("/api/v1/cases", params={"limit": 500})).json()["items"]
    return sorted((c["sensor_id"], c["category"], c["class_code"], c["started_at"]) for c in items)


def _state_records(recording: Path) -> int:
    from recording.format import RecordingReader

    with RecordingReader(recording) as reader:
        return sum(1 for r in reader if r.topic.endswith("/state"))


async def test_replay_at_x10_and_x100_opens_the_same_cases(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    run = run_scenario(load_scenario(SCENARIO), tmp_path / "run")
    (tmp_path / "x10").mkdir()
    (tmp_path / "x100").mkdir()
    at_10 = await _replay_through_node(run.recording, mosquitto, 10, tmp_path / "x10")
    at_100 = await _replay_through_node(run.recording, mosquitto, 100, tmp_path / "x100")
    assert at_10 == at_100
    (incident,) = run.truth.incidents
    assert [c[0] for c in at_10] == [incident.sensor_id]
