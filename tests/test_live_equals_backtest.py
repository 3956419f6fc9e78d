"""`citysense backtest` and the live pipeline agree: the same recording, run offline and
replayed fast through a real broker into a running node, opens the same cases, opened and
cleared at the same event times."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from center import CaseOut
from citysense.backtest import backtest
from citysense.broker import MosquittoBroker
from recording.format import RecordingReader
from recording.replay import replay
from rules import DEFAULT_RULES_FILE, load_rules
from simulator.run import run_scenario
from simulator.scenario import load_scenario, parse_scenario
from tests.node_harness import node_client, serving_node

pytestmark = pytest.mark.integration
LIBRARY = Path(__file__).parents[1] / "scenarios"
MIXED = """
name: mixed-live
description: Every emergency kind but flooding, with an outage, swapped and resent batches.
seed: 5
start: 2026-07-01T08:00:00+08:00
duration: 30m
city: {districts: ["410105"], stations_per_district: 3, covers_per_station: 4,
       pressure_per_station: 2, poles_per_station: 2}
incidents:
  - {kind: cover_open, sensor: random, start: 3m, duration: 6m}
  - {kind: pole_fall, sensor: random, start: 6m, duration: 10m, params: {angle_deg: 40}}
  - {kind: pressure_burst, sensor: random, start: 10m, duration: 8m, params: {drop_mpa: 0.08}}
  - {kind: gas_leak, sensor: random, start: 12m, duration: 10m, params: {ppm: 5000}}
  - {kind: cover_open, sensor: random, start: 20m, duration: 3m, params: {angle_deg: 30}}
faults:
  - {kind: station_offline, station: st-410105-002, start: 15m, duration: 5m}
  - {kind: out_of_order, station: st-410105-001, start: 2m, duration: 10m}
  - {kind: duplicate, station: st-410105-003, start: 2m, duration: 15m, probability: 0.3}
"""
"""Five incidents of four kinds; the gas leak's station is offline while it builds up (its
backlog arrives late), and batches are swapped and sent twice elsewhere."""

Case = tuple[object, ...]


def _case(case: CaseOut) -> Case:
    return (
        case.rule_id,
        case.sensor_id,
        case.started_at,
        case.opened_at,
        case.status,
        case.cleared_at,
        tuple(case.members),
        case.class_code,
        case.severity,
    )


def _differences(offline: set[Case], live: set[Case]) -> str:
    fields = "(rule, sensor, started, opened, status, cleared, members, class, severity)"
    lines = [f"backtest and live differ {fields}:"]
    lines += [f"  backtest only: {c}" for c in sorted(offline - live, key=str)]
    lines += [f"  live only:     {c}" for c in sorted(live - offline, key=str)]
    return "\n".join(lines)


async def _live_cases(
    recording: Path, broker: MosquittoBroker, data: Path, want: set[Case]
) -> set[Case]:
    """Replay at x1000 into a fresh node; its cases once every telemetry message is consumed
    (alerts land a moment after their batch is counted: up to 10 s more for them to match)."""
    with RecordingReader(recording) as reader:
        telemetry = sum(1 for r in reader if r.topic.endswith("/telemetry"))
    async with serving_node(broker, data) as node:
        await asyncio.wait_for(node.consumer.connected.wait(), timeout=10)
        await replay(recording, host=broker.host, port=broker.port, speed=1000)
        metrics = node.pipeline.metrics

        def consumed() -> float:
            total = 0.0
            for counter in (metrics.batches, metrics.duplicates, metrics.rejected):
                for metric in counter.collect():
                    total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
            return total

        async with asyncio.timeout(30):
            while consumed() < telemetry:  # noqa: ASYNC110 (polls ingest's counters)
                await asyncio.sleep(0.05)
        cases: set[Case] = set()
        async with await node_client(node) as http:
            for _ in range(50):
                body = (await http.get("/api/v1/cases", params={"limit": 500})).json()
                cases = {_case(CaseOut.model_validate(item)) for item in body["items"]}
                if cases == want:
                    break
                await asyncio.sleep(0.2)
    return cases


@pytest.mark.parametrize("scenario", ["rush-hour-covers", "mixed-live"])
async def test_backtest_equals_the_live_pipeline_on_the_same_traffic(
    scenario: str, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    loaded = (
        parse_scenario(MIXED)
        if scenario == "mixed-live"
        else load_scenario(LIBRARY / f"{scenario}.yaml")
    )
    run = run_scenario(loaded, tmp_path / "run")
    result = await backtest(run.recording, load_rules(DEFAULT_RULES_FILE))
    offline = {_case(c) for c in result.cases}
    assert len(offline) == len(run.truth.incidents) >= 3, offline
    (tmp_path / "node").mkdir()
    live = await _live_cases(run.recording, mosquitto, tmp_path / "node", offline)
    assert live == offline, _differences(offline, live)
