import random
from datetime import timedelta

import pytest

from protocol import Reading, SensorKind
from rules import RuleEngine, RuleError, load_rules, parse_rules
from tests.factories import T0, tilt

RULES = load_rules()


def run(readings: list[Reading]) -> list[tuple[str, float, float]]:
    """(state, started_at offset s, at offset s) of every alert."""
    engine = RuleEngine(RULES)
    return [
        (a.state, (a.started_at - T0).total_seconds(), (a.at - T0).total_seconds())
        for a in engine.process("st-1", readings)
    ]


def series(values: list[float], step: float = 1.0) -> list[Reading]:
    return [tilt(i * step, v) for i, v in enumerate(values)]


def test_sustained_tilt_opens_once_at_sustain_time_and_clears_below_clear_threshold() -> None:
    alerts = run(series([1, 1, 60, 61, 62, 63, 64, 65, 10, 8, 4, 1]))
    assert alerts == [("open", 2, 5), ("cleared", 2, 10)]


def test_vehicle_rocking_spike_shorter_than_sustain_never_opens() -> None:
    assert run(series([1, 25, 30, 1, 22, 1, 1, 18, 19, 20, 2])) == []


def test_value_in_hysteresis_band_keeps_the_alert_open() -> None:
    alerts = run(series([60, 60, 60, 60, 10, 12, 9, 14, 60, 60, 60, 60]))
    assert alerts == [("open", 0, 3)]


def test_dip_below_open_threshold_restarts_the_sustain_clock() -> None:
    alerts = run(series([60, 60, 60, 14, 60, 60, 60, 60]))
    assert alerts == [("open", 4, 7)]


def test_alerts_do_not_depend_on_batching_or_order_within_a_batch() -> None:
    readings = series([1, 60, 60, 60, 60, 60, 2, 2, 40, 40, 40, 40, 40, 1])
    whole = RuleEngine(RULES).process("st-1", readings)
    engine = RuleEngine(RULES)
    shuffled_batches: list[object] = []
    for start in range(0, len(readings), 3):
        chunk = readings[start : start + 3]
        random.Random(start).shuffle(chunk)
        shuffled_batches.extend(engine.process("st-1", chunk))
    assert shuffled_batches == whole
    assert len(whole) == 4


def test_reading_older_than_one_evaluated_is_skipped_and_counted() -> None:
    engine = RuleEngine(RULES)
    engine.process("st-1", series([60, 60, 60, 60]))
    assert engine.process("st-1", [tilt(1.5, 1.0)]) == []
    assert engine.stats.out_of_order == 1


def test_sensors_are_independent_and_other_kinds_are_ignored() -> None:
    other = [tilt(i, 60, sensor_id="st-1.cover-02") for i in range(2)]
    pressure = Reading(
        sensor_id="st-1.p-01", kind=SensorKind.PRESSURE, ts=T0, values={"pressure_mpa": 0.3}
    )
    alerts = RuleEngine(RULES).process("st-1", [*series([60] * 5), *other, pressure])
    assert [(a.sensor_id, a.state) for a in alerts] == [("st-1.cover-01", "open")]


def test_alert_carries_evidence_and_case_target() -> None:
    (alert,) = RuleEngine(RULES).process("st-1", series([1, 70, 71, 72, 73]))
    assert alert.started_at == T0 + timedelta(seconds=1)
    assert [e.value for e in alert.evidence] == [70, 71, 72, 73]
    assert alert.target.category == "component"
    assert alert.target.code is None
    assert alert.threshold == 15.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not valid YAML"),
        ("rules: []", "at least 1"),
        (
            "rules:\n- {id: a, title: t, kind: cover, field: tilt_deg, open_above: 5,"
            " clear_below: 10, sustain_s: 1, case: {category: component}}",
            "must not exceed",
        ),
        (
            "rules:\n- {id: a, title: t, kind: cover, field: tilt_deg, open_above: 5,"
            " clear_below: 1, sustain_s: 1, case: {category: event}}",
            "needs its class code",
        ),
        (
            "rules:\n- {id: a, title: t, kind: cover, field: tilt_deg, open_above: 5,"
            " clear_below: 1, sustain_s: 1, case: {category: component, code: '0199'}}",
            "unknown GB/T 30428",
        ),
    ],
)
def test_bad_rule_files_are_refused_with_where_and_why(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(text, "test.yaml")
