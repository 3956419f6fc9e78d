"""The batched path gives what the plain loop gives: alerts, counters, snapshot bytes."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import numpy as np
import pytest

from bench.engine import Batch, Traffic, chunks, traffic
from rules import Alert, RuleEngine, load_rules, parse_rules, snapshot
from rules.batch import BatchEngine, Chunk, columns, vector_test
from rules.conditions import compile_condition
from rules.schema import RuleSet
from simulator import CoverOpen, SimulatedStation, build_city
from tests.factories import T0

MESSY = Traffic(
    stations=12, steps=24, incidents=0.03, rocking=0.02, disorder=0.2, skewed=0.3, resets=0.01
)


def plain(rules: RuleSet, batches: list[Batch]) -> tuple[RuleEngine, list[Alert]]:
    engine, alerts = RuleEngine(rules), []
    for station_id, readings, sent in batches:
        alerts += engine.process(station_id, readings, sent)
    return engine, alerts


def batched(rules: RuleSet, parts: list[Chunk]) -> tuple[BatchEngine, list[Alert]]:
    engine, alerts = BatchEngine(RuleEngine(rules)), []
    for part in parts:
        alerts += engine.process_chunk(part)
    return engine, alerts


def assert_same(rules: RuleSet, batches: list[Batch], parts: list[Chunk]) -> list[Alert]:
    one, expected = plain(rules, batches)
    other, found = batched(rules, parts)
    assert other.snapshot() == snapshot(one)  # readings still waiting included
    expected += one.drain()
    found += other.drain()
    assert repr(found) == repr(expected)  # repr: an alert's NaN value is not == itself
    assert other.engine.stats.counters() == one.stats.counters()
    assert other.snapshot() == snapshot(one)
    return expected


@pytest.mark.parametrize("size", [1, 5, 12, 50, 1000])
def test_messy_traffic_gives_the_same_alerts_counters_and_snapshot(size: int) -> None:
    batches = traffic(MESSY)
    alerts = assert_same(load_rules(), batches, chunks(batches, size))
    assert {a.state for a in alerts} >= {"open", "cleared"}


def test_the_messy_traffic_exercises_every_counter_it_should() -> None:
    engine, _ = plain(load_rules(), traffic(MESSY))
    engine.drain()
    counters = engine.stats.counters()
    for name in (
        "late_evaluated",
        "late_skipped",
        "clock_skew_corrected",
        "clock_reset_flagged",
        "missing_field",
    ):
        assert counters[name] > 0, name


def test_columns_without_the_readings_own_values_give_the_same_alerts() -> None:
    batches = traffic(Traffic(stations=6, steps=20, incidents=0.05, rocking=0.02, disorder=0.2))
    parts = [
        Chunk(c.stations, c.sent_at, c.starts, c.sensor_ids, c.kinds, c.ts, c.values)
        for c in chunks(batches, 7)
    ]
    one, expected = plain(load_rules(), batches)
    other, found = batched(load_rules(), parts)
    expected += one.drain()
    found += other.drain()
    assert repr(found) == repr(expected)
    assert other.engine.stats.counters() == one.stats.counters()
    assert json.loads(other.snapshot()) == json.loads(snapshot(one))


def test_simulated_rocking_covers_and_an_open_cover() -> None:
    city = build_city(seed=7, stations_per_district=1, districts=["410105"])
    station = SimulatedStation(city.stations[0], city.seed)
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=60), timedelta(minutes=3)))
    batches: list[Batch] = []
    for second in range(600):
        at = T0 + timedelta(seconds=second)
        readings = station.read(at)
        if readings:
            batches.append((station.station_id, readings, at))
    alerts = assert_same(load_rules(), batches, chunks(batches, 9))
    assert [(a.sensor_id, a.state) for a in alerts] == [(cover, "open"), (cover, "cleared")]


def test_a_rule_set_with_silence_rules_goes_reading_by_reading() -> None:
    rules = parse_rules(
        "rules:\n"
        "  - {id: quiet, title: t, kind: cover, case: {category: component}, no_data: 40s}\n"
        "  - {id: tilt, title: t, kind: cover, case: {category: component},"
        " when: {field: tilt_deg, above: 20}, hold: 5s}\n",
        "test.yaml",
    )
    batches = traffic(Traffic(stations=3, sensors=7, steps=30, incidents=0.2))
    del batches[40:50]  # some stations fall silent for a while
    assert_same(rules, batches, chunks(batches, 4))


def test_interleaving_plain_batches_after_a_sync() -> None:
    batches = traffic(Traffic(stations=4, steps=12, incidents=0.1, disorder=0.3))
    one, expected = plain(load_rules(), batches)
    other = BatchEngine(RuleEngine(load_rules()))
    found: list[Alert] = []
    for k, (station_id, readings, sent) in enumerate(batches):
        if k % 3:
            found += other.process(station_id, readings, sent)
        else:
            found += other.sync().process(station_id, readings, sent)
    expected += one.drain()
    found += other.drain()
    assert repr(found) == repr(expected)
    assert other.snapshot() == snapshot(one)


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "tilt_deg", "above": 3},
        {"field": "tilt_deg", "below": 3},
        {"field": "gas_ppm", "outside": [10, 20]},
        {"all": [{"field": "tilt_deg", "above": 3}, {"field": "gas_ppm", "below": 15}]},
        {"any": [{"field": "tilt_deg", "above": 3}, {"field": "gas_ppm", "below": 15}]},
        {"any": [{"all": [{"field": "tilt_deg", "above": 1}]}, {"field": "gas_ppm", "above": 9}]},
    ],
)
def test_vector_tests_follow_the_three_valued_logic(condition: dict[str, object]) -> None:
    rule = {"id": "r", "title": "t", "kind": "cover", "case": {"category": "component"}}
    parsed = parse_rules(json.dumps({"rules": [{**rule, "when": condition}]}), "t.yaml")
    when = parsed.rules[0].when
    assert when is not None
    rng = random.Random(3)
    rows = [
        {name: rng.uniform(0.0, 25.0) for name in ("tilt_deg", "gas_ppm") if rng.random() < 0.7}
        for _ in range(400)
    ]
    test = vector_test(when)
    assert test is not None
    table = columns(rows)
    holds, unknown = test(lambda name: table.get(name, np.full(len(rows), np.nan)))
    scalar = compile_condition(when).test
    expected = [scalar(values, 0.0, None) for values in rows]
    assert [None if u else bool(h) for h, u in zip(holds, unknown, strict=True)] == expected


def test_stateful_conditions_are_not_vectorised() -> None:
    (burst,) = [rule for rule in load_rules().rules if rule.id == "water-main-burst"]
    drop = burst.when
    assert drop is not None
    assert vector_test(drop) is None
