"""`citysense lab run`: the scenario library held to the outcomes its files state (``expect:``),
through the CLI and the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citysense.backtest import backtest
from citysense.cli import app
from citysense.lab import check, run_file, sample_value
from rules import DEFAULT_RULES_FILE, load_rules
from simulator.run import run_scenario
from simulator.scenario import Expectation, load_scenario, parse_scenario
from simulator.score import ScoredCase, score

LIBRARY = Path(__file__).parents[1] / "scenarios"
SMALL = ("clock-reset", "garbage", "duplicates")
"""Short scenarios with counters in their expectations (well under a second each)."""
FLAGGED = 'citysense_rules_readings_total{outcome="clock_reset_flagged"}'


def _lab(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["lab", "run", *map(str, args)], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def _scenario(tmp_path: Path, expect: str, name: str = "replay-check") -> Path:
    """A library scenario with its ``expect:`` block replaced."""
    text = (LIBRARY / f"{name}.yaml").read_text(encoding="utf-8")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text[: text.index("expect:")] + expect, encoding="utf-8")
    return path


def test_every_library_scenario_states_its_expected_outcome() -> None:
    for path in sorted(LIBRARY.glob("*.yaml")):
        assert "expect" in load_scenario(path).model_fields_set, path.name


def test_a_scenario_without_expect_gets_the_defaults() -> None:
    text = (LIBRARY / "replay-check.yaml").read_text(encoding="utf-8")
    scenario = parse_scenario(text[: text.index("expect:")])
    assert scenario.expect == Expectation()
    assert (scenario.expect.recall, scenario.expect.max_false_alarms) == (1.0, 0)


def test_the_lab_passes_library_scenarios_on_the_default_rules() -> None:
    code, out, err = _lab(*(LIBRARY / f"{name}.yaml" for name in SMALL))
    assert code == 0, out + err
    for name in SMALL:
        assert name in out
    assert out.count("PASS") == len(SMALL)
    assert "3 scenario(s): 3 passed, 0 failed" in out
    assert "PASS clock-reset" in err  # progress on stderr
    code, out, err = _lab(*(LIBRARY / f"{name}.yaml" for name in SMALL), "--json")
    assert code == 0, out + err
    document = json.loads(out)
    assert document["passed"] is True
    assert document["failed"] == []
    garbage = {r["scenario"]: r for r in document["results"]}["garbage"]
    assert garbage["recall"] == 1.0
    assert {c["sample"]: c["value"] for c in garbage["counters"]}[
        'citysense_ingest_rejected_total{reason="not_json"}'
    ] == 24


def test_a_rule_set_that_misses_the_incident_fails_and_names_it(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    text = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    stricter = text.replace("field: tilt_deg, above: 20}", "field: tilt_deg, above: 80}")
    assert stricter != text
    strict.write_text(stricter, encoding="utf-8")
    code, out, _ = _lab(LIBRARY / "clock-reset.yaml", "--rules", strict)
    assert code == 1, out
    assert "FAIL" in out
    assert "recall 0% (0/1) below 100%: missed clock-reset-000" in out
    assert "0 passed, 1 failed" in out
    # a rule set without the rule at all: missed too (not left out of the recall)
    disabled = tmp_path / "disabled.yaml"
    disabled.write_text(
        text.replace("  - id: cover-open\n", "  - id: cover-open\n    enabled: false\n")
    )
    code, out, _ = _lab(LIBRARY / "clock-reset.yaml", "--rules", disabled, "--json")
    assert code == 1, out
    assert json.loads(out)["results"][0]["failures"] == [
        "recall 0% (0/1) below 100%: missed clock-reset-000 "
        "(no enabled rule watches cover.tilt_deg)"
    ]


def test_an_expectation_that_cannot_hold_fails_with_its_reasons(tmp_path: Path) -> None:
    path = _scenario(
        tmp_path,
        "expect:\n"
        "  max_delay_s: 5\n"
        "  counters:\n"
        "    citysense_ingest_duplicate_batches_total: {min: 1}\n"
        "    citysense_no_such_thing_total: {max: 0}\n",
    )
    code, out, err = _lab(path, "--json")
    assert code == 1, out + err
    (result,) = json.loads(out)["results"]
    assert result["passed"] is False
    assert result["failures"] == [
        "cover_open: delay 20 s above 5 s (1 of 1 caught)",
        "counter citysense_ingest_duplicate_batches_total = 0, expected >= 1",
        "counter citysense_no_such_thing_total: no such metric sample after the backtest",
    ]


@pytest.mark.parametrize(
    ("expect", "words"),
    [
        ("expect: {max_delays: 3}\n", "expect.max_delays: Extra inputs are not permitted"),
        ("expect: {recall: 1.5}\n", "expect.recall"),
        ("expect: {cases_per_incident: 2}\n", "expect.cases_per_incident"),
        ("expect: {counters: {'a_total{reason=x}': {min: 1}}}\n", 'label="value"'),
        ("expect: {counters: {a_total: {}}}\n", "give min, max or equals"),
        ("expect: {counters: {a_total: {min: 2, max: 1}}}\n", "min is above max"),
        ("expect: {counters: {a_total: {equals: 1, max: 1}}}\n", "equals stands alone"),
        ("expect: {counters: {a_total: {at_least: 1}}}\n", "Extra inputs"),
    ],
)
def test_a_bad_expect_block_is_refused_with_exit_code_2(
    tmp_path: Path, expect: str, words: str
) -> None:
    code, out, err = _lab(_scenario(tmp_path, expect))
    assert code == 2, out + err
    assert words in " ".join(err.split()).replace("│", ""), err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["{tmp}/missing.yaml"], "no such file or directory"),
        (["{tmp}/empty"], "no scenarios (*.yaml) in"),
        (["{tmp}/notyaml.yaml"], "not valid YAML"),
        ([str(LIBRARY / "replay-check.yaml"), "--rules", "{tmp}/missing.yaml"], "--rules"),
        ([str(LIBRARY / "replay-check.yaml"), "--rules", "{tmp}/notyaml.yaml"], "--rules"),
    ],
)
def test_bad_input_is_one_clear_refusal_with_exit_code_2(
    tmp_path: Path, args: list[str], words: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notyaml.yaml").write_text("name: [x\n", encoding="utf-8")
    code, out, err = _lab(*(a.format(tmp=tmp_path) for a in args))
    assert code == 2, out + err
    assert words in err
    assert "Traceback" not in out + err
    assert out == ""


async def test_the_library_runs_a_scenario_file_and_checks_it() -> None:
    result = await run_file(LIBRARY / "clock-reset.yaml", load_rules())
    assert result.passed, result.failures
    assert (result.scenario, result.incidents, result.caught, result.recall) == (
        "clock-reset",
        1,
        1,
        1.0,
    )
    assert (result.cases_ok, result.false_alarms, result.delays_s) == (True, 0, (20.0,))
    assert {c.sample: c.value for c in result.counters}[FLAGGED] == 554


async def test_check_names_every_expectation_that_does_not_hold(tmp_path: Path) -> None:
    rules = load_rules()
    run = run_scenario(load_scenario(LIBRARY / "clock-reset.yaml"), tmp_path)
    backtested = await backtest(run.recording, rules)
    scored = score(run.truth, map(ScoredCase.from_api, backtested.cases), rules)
    expect = Expectation.model_validate(
        {
            "max_delay_s": 10,
            "counters": {FLAGGED: {"max": 0}, "citysense_ingest_batches": {"min": 0}},
        }
    )
    result = check(tmp_path / "clock-reset.yaml", expect, scored, backtested)
    assert not result.passed
    assert result.failures == (
        "cover_open: delay 20 s above 10 s (1 of 1 caught)",
        f"counter {FLAGGED} = 554, expected <= 0",
        "counter citysense_ingest_batches: no such metric sample after the backtest",
    )
    registry = backtested.metrics.registry
    assert sample_value(registry, "citysense_ingest_batches_total") == 313
    # a labelled counter that never counted reads 0; labels its name does not carry: no sample
    assert sample_value(registry, 'citysense_ingest_rejected_total{reason="not_json"}') == 0
    assert sample_value(registry, 'citysense_rules_readings_total{reason="late"}') is None
    assert sample_value(registry, 'citysense_nothing_total{reason="late"}') is None
