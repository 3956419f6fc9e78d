"""Threshold tuning: sweeps, rule-set comparison, gates and the truth check, in the library and
through `citysense backtest` on a simulated scenario."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citysense.cli import app
from citysense.tuning import (
    Gates,
    TuningError,
    Variant,
    check_belongs,
    parse_sweep,
    recommend,
    swept,
)
from rules import DEFAULT_RULES_FILE
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from simulator.score import KindScore, Score
from simulator.truth import GroundTruth

SCENARIOS = Path(__file__).parents[1] / "scenarios"
DEFAULT_TEXT = DEFAULT_RULES_FILE.read_text(encoding="utf-8")


def test_a_sweep_spec_gives_its_rule_path_and_values() -> None:
    sweep = parse_sweep("cover-open.when.above=10:40:10")
    assert (sweep.rule_id, sweep.path, sweep.values) == (
        "cover-open",
        ("when", "above"),
        (10.0, 20.0, 30.0, 40.0),
    )
    assert parse_sweep("x.when.all.0.above=0.1:0.3:0.1").values == (0.1, 0.2, 0.3)
    assert parse_sweep("x.when.all.0.above=0:1:1").path == ("when", "all", 0, "above")


@pytest.mark.parametrize(
    "spec",
    [
        "cover-open=1:2:1",
        "cover-open.hold",
        "cover-open.hold=1:2",
        "cover-open.hold=a:b:c",
        "cover-open.hold=5:1:1",
        "cover-open.hold=1:5:0",
        "cover-open.hold=0:1000:1",
        "cover-open.hold=nan:1:1",
    ],
)
def test_a_bad_sweep_spec_is_refused_with_the_reason(spec: str) -> None:
    with pytest.raises(TuningError):
        parse_sweep(spec)


def test_a_swept_value_lands_in_the_rule_and_nowhere_else() -> None:
    rules = swept(DEFAULT_TEXT, "default", parse_sweep("cover-open.when.above=35:35:1"), 35)
    changed = rules.rule("cover-open").model_dump()
    assert changed["when"]["above"] == 35
    default = swept(DEFAULT_TEXT, "default", parse_sweep("cover-open.when.above=20:20:1"), 20)
    for rule in rules.rules:
        if rule.id != "cover-open":
            assert rule == default.rule(rule.id)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no-such-rule.hold=1:1:1", "no rule 'no-such-rule'"),
        ("cover-open.when.nothing=1:1:1", "has no cover-open.when.nothing"),
        ("cover-open.nothing.deeper=1:1:1", "has no cover-open.nothing.deeper"),
        ("cover-open.hold=-5:-5:1", "cover-open"),  # the schema refuses a negative duration
    ],
)
def test_a_sweep_the_rules_cannot_take_is_refused(spec: str, words: str) -> None:
    sweep = parse_sweep(spec)
    with pytest.raises(TuningError, match=words.replace(".", r"\.")):
        swept(DEFAULT_TEXT, "default", sweep, sweep.values[0])


def _score(detected: int, false_alarms: int, delay: float, incidents: int = 2) -> Score:
    missed = tuple(f"inc-{k}" for k in range(detected, incidents))
    kind = KindScore(
        kind="cover_open",
        incidents=incidents,
        rule="cover-open",
        emergency=True,
        detected=detected,
        delays_s=(delay,) * detected,
        missed=missed,
    )
    return Score("s", 1.0, detected + false_alarms, (kind,), false_alarms)


def test_the_recommendation_is_the_middle_of_the_best_values() -> None:
    variants = [
        Variant("10", _score(2, 3, 20), 10),
        Variant("20", _score(2, 0, 20), 20),
        Variant("30", _score(2, 0, 20), 30),
        Variant("40", _score(2, 0, 20), 40),
        Variant("50", _score(1, 0, 20), 50),
    ]
    assert recommend(variants) is variants[2]
    assert recommend([variants[0], variants[4]]) is variants[0]  # recall first
    faster = Variant("25", _score(2, 0, 5), 25)
    assert recommend([*variants, faster]) is faster  # then delay
    assert recommend([]) is None


def test_gates_name_what_failed() -> None:
    variant = Variant("mine", _score(1, 4, 20))
    assert Gates().failures(variant) == []
    assert Gates(min_recall=0.5, max_false_alarms=4).failures(variant) == []
    failures = Gates(min_recall=1.0, max_false_alarms=0).failures(variant)
    assert failures == [
        "mine: recall 50% < 100% (missed inc-1)",
        "mine: 4 false alarms > 0",
    ]


def test_a_truth_file_of_another_run_is_refused() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    truth = GroundTruth("cover-open", 7, when, when, 1, 1, (), ())
    check_belongs(truth, {"scenario": "cover-open", "seed": 7}, Path("a.csrec"))
    check_belongs(truth, {}, Path("capture.csrec"))  # a live capture names no scenario
    with pytest.raises(TuningError, match="scenario 'flooding' seed 7"):
        check_belongs(truth, {"scenario": "flooding", "seed": 7}, Path("a.csrec"))
    with pytest.raises(TuningError, match="seed 8"):
        check_belongs(replace(truth, seed=8), {"scenario": "cover-open", "seed": 7}, Path("a"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    for name in ("cover-open", "flooding"):
        run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), out)
    strict = DEFAULT_TEXT.replace(
        "when: {field: tilt_deg, above: 20}", "when: {field: tilt_deg, above: 35}"
    )
    assert strict != DEFAULT_TEXT
    (out / "strict.yaml").write_text(strict, encoding="utf-8")
    return out


def _backtest(runs: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app,
        ["backtest", str(runs / "cover-open.csrec"), *args],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.stdout, result.stderr


def test_a_sweep_lists_each_value_names_the_misses_and_recommends(runs: Path) -> None:
    truth = str(runs / "cover-open.truth.json")
    code, out, _ = _backtest(runs, "--truth", truth, "--sweep", "cover-open.when.above=20:40:10")
    assert code == 0, out
    assert "recommended: cover-open.when.above=20" in out
    assert "cover-open-001" in out  # missed at 30 and 40, by name
    code, out, _ = _backtest(
        runs, "--truth", truth, "--sweep", "cover-open.when.above=20:40:10", "--json"
    )
    document = json.loads(out)
    assert document["recommended"] == 20
    recalls = [v["recall"] for v in document["variants"]]
    assert recalls == [1.0, 0.5, 0.5]
    assert document["variants"][1]["missed"] == ["cover-open-001"]


def test_rule_sets_side_by_side_and_the_gates_fail_the_exit_code(runs: Path) -> None:
    truth = str(runs / "cover-open.truth.json")
    strict = str(runs / "strict.yaml")
    code, out, _ = _backtest(
        runs, "--truth", truth, "--rules", str(DEFAULT_RULES_FILE), "--rules", strict, "--json"
    )
    assert code == 0, out
    rows = {v["label"]: v for v in json.loads(out)["variants"]}
    assert rows["default_rules.yaml"]["recall"] == 1.0
    assert rows["strict.yaml"]["recall"] == 0.5
    assert rows["strict.yaml"]["missed"] == ["cover-open-001"]
    code, out, err = _backtest(runs, "--truth", truth, "--rules", strict, "--min-recall", "1")
    assert code == 1
    assert "gate failed: strict.yaml: recall 50% < 100% (missed cover-open-001)" in err
    code, _, err = _backtest(runs, "--truth", truth, "--min-recall", "1", "--max-false-alarms", "0")
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--truth", "{runs}/flooding.truth.json"], "is scenario 'cover-open'"),
        (["--truth", "{runs}/missing.truth.json"], "cannot read"),
        (["--truth", "{runs}/strict.yaml"], "cannot read"),
        (["--sweep", "cover-open.when.above=1:2:1"], "needs --truth"),
        (["--min-recall", "1"], "needs --truth"),
        (["--truth", "{runs}/cover-open.truth.json", "--sweep", "cover-open=1"], "RULE.FIELD"),
        (["--truth", "{runs}/cover-open.truth.json", "--sweep", "nope.hold=1:1:1"], "no rule"),
        (["--truth", "{runs}/cover-open.truth.json", "--min-recall", "2"], "min-recall"),
    ],
)
def test_bad_input_is_one_clear_refusal_with_exit_code_2(
    runs: Path, args: list[str], words: str
) -> None:
    code, out, err = _backtest(runs, *(a.format(runs=runs) for a in args))
    assert code == 2, out + err
    assert words in err
    assert "Traceback" not in out + err
