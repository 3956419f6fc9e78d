from __future__ import annotations

import json

import pytest

from bench.report import (
    SCHEMA,
    BenchError,
    Measurement,
    compared,
    document,
    machine_info,
    per_second,
    ratio,
    table,
)


def measurement(name: str, **figures: float) -> Measurement:
    return Measurement(name=name, title=name, group="test", params={"n": 1}, figures=figures)


RAW = measurement("broker_raw_qos1", messages_per_s=20_000.0, bytes_per_s=2e6)
LOAD = measurement(
    "loadgen_max_qos1", readings_per_s=500_000.0, messages_per_s=10_000.0, bytes_per_s=7e7
)


def test_ratio_divides_a_figure_by_the_same_figure_of_the_baseline() -> None:
    found = ratio("messages_per_s", LOAD, RAW)
    assert (found.figure, found.baseline, found.value) == ("messages_per_s", RAW.name, 0.5)


def test_compared_adds_one_ratio_per_figure_and_keeps_earlier_ones() -> None:
    once = compared(LOAD, RAW, ["messages_per_s", "bytes_per_s"])
    twice = compared(once, measurement("other", messages_per_s=40_000.0), ["messages_per_s"])
    assert [(r.baseline, r.value) for r in twice.ratios] == [
        (RAW.name, 0.5),
        (RAW.name, 35.0),
        ("other", 0.25),
    ]
    assert LOAD.ratios == ()


def test_a_missing_figure_or_an_empty_baseline_is_an_error() -> None:
    with pytest.raises(BenchError, match="readings_per_s"):
        ratio("readings_per_s", LOAD, RAW)
    with pytest.raises(BenchError, match="baseline"):
        ratio("messages_per_s", LOAD, measurement("idle", messages_per_s=0.0))


def test_per_second_refuses_an_empty_interval() -> None:
    assert per_second(300, 1.5) == 200
    with pytest.raises(BenchError):
        per_second(1, 0.0)


def test_document_carries_machine_plan_and_measurements_as_json() -> None:
    machine = machine_info()
    result = document(
        [RAW, compared(LOAD, RAW, ["messages_per_s"])],
        quick=True,
        seconds=1.23456,
        machine=machine,
        command="python -m bench --quick",
        plan={"name": "quick"},
    )
    again = json.loads(json.dumps(result))
    assert again["schema"] == SCHEMA
    assert again["seconds"] == 1.235
    assert again["machine"]["cpu_count"] >= 1
    assert again["machine"]["libraries"]["paho-mqtt"]
    assert [m["name"] for m in again["measurements"]] == [RAW.name, LOAD.name]
    assert again["measurements"][1]["ratios"] == [
        {"figure": "messages_per_s", "baseline": RAW.name, "value": 0.5}
    ]


def test_table_shows_figures_and_ratios_per_measurement() -> None:
    text = table([RAW, compared(LOAD, RAW, ["messages_per_s"])])
    header, rule, raw_row, load_row = text.splitlines()
    assert header.split()[:2] == ["measurement", "readings/s"]
    assert set(rule) == {"-"}
    assert raw_row.split()[:4] == [RAW.name, "-", "20,000", "2"]
    assert "500,000" in load_row
    assert "0.5× broker_raw_qos1 (messages)" in load_row
