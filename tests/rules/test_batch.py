"""The batched path gives what the plain loop gives: alerts, counters, snapshot bytes."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import numpy as np
import pytest

from bench.engine import Batch, Traffic, chunks, traffic
from protocol import Reading, SensorKind
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


def _pressure_days(days: float, every_s: float, seed: int = 3) -> list[Batch]:
    """Stations of pressure loggers through whole days of the demand cycle (every quarter hour
    of the profile seen), three of them bursting for 20 minutes, one silent for an hour, one
    sending its battery level now and then."""
    rng = random.Random(seed)
    out: list[Batch] = []
    steps = int(days * 86_400 / every_s)
    for step in range(steps):
        sent = T0 + timedelta(seconds=(step + 1) * every_s)
        for s in range(3):
            station = f"pr-{s}"
            readings = []
            for k in range(4):
                sensor = f"{station}-{k}"
                t = step * every_s + rng.uniform(0.0, every_s)
                daily = 0.05 * np.sin(t / 86_400.0 * 2 * np.pi) + 0.01 * np.sin(t / 3_600.0)
                value = 0.32 + float(daily) + rng.uniform(-0.002, 0.002)
                if sensor in ("pr-1-2", "pr-1-3") and 40_000 <= t < 41_200:
                    value -= 0.08  # a burst, felt by a neighbour
                if sensor == "pr-0-2" and 20_000 <= t < 21_200:
                    value -= 0.05  # a smaller one near the day's peak
                if sensor == "pr-2-0" and 60_000 <= t < 63_600:
                    continue  # silent for an hour
                values = {"pressure_mpa": value}
                if sensor == "pr-0-1" and step % 7 == 3:
                    values["battery_v"] = 3.6
                readings.append(
                    Reading(
                        sensor_id=sensor,
                        kind=SensorKind.PRESSURE,
                        ts=T0 + timedelta(seconds=t),
                        values=values,
                    )
                )
            out.append((station, readings, sent))
    return out


PRESSURE_RULES = {
    "defaults": None,
    "fraction, no profile, beside a plain threshold": (
        "rules:\n"
        "  - {id: low, title: t, kind: pressure, case: {category: event, code: '0402'},"
        " when: {field: pressure_mpa, below: 0.2}, hold: 30s}\n"
        "  - {id: drop, title: t, kind: pressure, case: {category: event, code: '0402'},"
        " when: {field: pressure_mpa, drop_fraction: 0.1, baseline: {tau: 5m, profile: false}},"
        " hold: 15s, clear: {hold: 1m}}\n"
    ),
}


@pytest.mark.parametrize("size", [1, 3, 20])
@pytest.mark.parametrize("name", list(PRESSURE_RULES))
def test_pressure_baselines_in_columns_learn_what_the_plain_path_learns(
    name: str, size: int
) -> None:
    """Baselines screened in columns (several readings of a sensor per chunk when ``size`` > 3)
    give the plain path's alerts, counters and snapshot bytes, also mid-way."""
    text = PRESSURE_RULES[name]
    rules = load_rules() if text is None else parse_rules(text, "test.yaml")
    batches = _pressure_days(1.2, 60.0)
    parts = chunks(batches, size)
    one, expected = RuleEngine(rules), []
    other, found = BatchEngine(RuleEngine(rules)), []
    done = 0
    for k, part in enumerate(parts):
        found += other.process_chunk(part)
        for station_id, readings, sent in batches[done : done + len(part.stations)]:
            expected += one.process(station_id, readings, sent)
        done += len(part.stations)
        if k % 97 == 0:  # a snapshot while the columns own the baselines writes them back
            assert other.snapshot() == snapshot(one)
    expected += one.drain()
    found += other.drain()
    assert repr(found) == repr(expected)
    assert other.engine.stats.counters() == one.stats.counters()
    assert other.snapshot() == snapshot(one)
    burst = [(a.sensor_id, a.state) for a in expected if a.rule_id != "low"]
    bursting = ("pr-0-2", "pr-1-2", "pr-1-3")
    assert sorted(burst) == [(s, state) for s in bursting for state in ("cleared", "open")]
    owned = int(other._owned.sum())
    assert owned >= 8, "the screen should own the resting loggers"
