"""Every scenario in scenarios/ runs through the simulator, the pipeline and the scoring tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citysense.backtest import BacktestResult, backtest
from rules import load_rules
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from simulator.score import Score, ScoredCase, score

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
SCENARIOS = sorted(LIBRARY.glob("*.yaml"))
RULES = load_rules()


async def _run(path: Path, out: Path) -> tuple[Score, BacktestResult, dict[str, int]]:
    run = run_scenario(load_scenario(path), out)
    result = await backtest(run.recording, RULES)
    scored = score(run.truth, map(ScoredCase.from_api, result.cases), RULES)
    return scored, result, run.truth.messages


def _counter(result: BacktestResult, name: str, **labels: str) -> float:
    return result.metrics.registry.get_sample_value(name, labels) or 0.0


def test_library_covers_every_incident_and_fault_kind() -> None:
    from typing import get_args

    from simulator.scenario import FaultKind, IncidentKind

    incidents, faults = set(), set()
    for path in SCENARIOS:
        scenario = load_scenario(path)
        incidents |= {i.kind for i in scenario.incidents}
        faults |= {f.kind for f in scenario.faults}
    assert incidents == set(get_args(IncidentKind))
    assert faults == set(get_args(FaultKind))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_scenario_runs_through_pipeline_and_scoring(path: Path, tmp_path: Path) -> None:
    scored, result, messages = await _run(path, tmp_path)
    document = scored.as_dict()
    print(json.dumps(document, ensure_ascii=False))  # the figures, with -s
    assert {k["kind"] for k in document["kinds"]} == {i.kind for i in load_scenario(path).incidents}
    for kind in document["kinds"]:
        if kind["rule"] is None:
            assert kind["status"].startswith("no rule watches")
            assert kind["recall"] is None
    # Nothing the run published is lost without a counter.
    assert (
        _counter(result, "citysense_ingest_rejected_total", reason="not_json")
        + _counter(result, "citysense_ingest_rejected_total", reason="invalid")
        + _counter(result, "citysense_ingest_rejected_total", reason="bad_version")
        == messages["garbage"]
    )
    assert _counter(result, "citysense_ingest_duplicate_batches_total") == messages["duplicates"]
    assert _counter(result, "citysense_ingest_batches_total") == messages["telemetry"]


@pytest.mark.parametrize("name", ["cover-open", "replay-check", "garbage", "duplicates"])
async def test_clean_cover_scenarios_catch_every_cover_without_false_alarms(
    name: str, tmp_path: Path
) -> None:
    scored, _, _ = await _run(LIBRARY / f"{name}.yaml", tmp_path)
    (cover,) = scored.kinds
    assert cover.recall == 1.0
    assert cover.duplicates == 0
    assert scored.false_alarms == 0


def test_same_seed_and_scenario_give_byte_identical_outputs(tmp_path: Path) -> None:
    scenario = load_scenario(LIBRARY / "station-offline.yaml")
    first = run_scenario(scenario, tmp_path / "a")
    second = run_scenario(scenario, tmp_path / "b")
    assert first.recording.read_bytes() == second.recording.read_bytes()
    assert first.truth_path.read_bytes() == second.truth_path.read_bytes()
    other = run_scenario(scenario.model_copy(update={"seed": 30}), tmp_path / "c")
    assert other.recording.read_bytes() != first.recording.read_bytes()
