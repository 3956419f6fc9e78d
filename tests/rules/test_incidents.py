"""One case per incident: flapping suppressed, neighbours grouped, evidence and flags carried."""

from __future__ import annotations

from datetime import timedelta

from protocol import Reading
from rules import parse_rules
from tests.factories import T0
from tests.rules.harness import Feed, at, rule, rules_yaml

FLAPPY = rules_yaml(
    rule(
        "when: {field: tilt_deg, above: 20}, hold: 2, flap: {max_opens: 3, window: 10m, quiet: 60s}"
    )
)

# Sensors on a line, 500 m apart (about 0.0054° of longitude at Zhengzhou's latitude).
PLACES = {f"p{i}": (113.60 + 0.0054 * i, 34.75) for i in range(10)}


def locate(sensor_id: str) -> tuple[float, float] | None:
    return PLACES.get(sensor_id)


def test_a_flapping_condition_reopens_its_last_case_marked_instead_of_a_new_one() -> None:
    feed = Feed(FLAPPY)
    cycle = [30, 30, 30, 1]
    out = feed.series(cycle * 5)
    states = [a[0] for a in out]
    # two ordinary openings, then the third re-opens the second case marked flapping; while it
    # flaps, a short recovery does not clear it
    assert states == ["open", "cleared", "open", "cleared", "flapping"]
    assert out[4][2] == out[2][2]  # the same case (same start) as the second opening
    assert feed.alerts[-1].flags == ("flapping",)
    assert feed.engine.stats.flapping == 1
    # quiet for the flap period: cleared for good
    rest = feed.series([1] * 70, start=20)
    assert [a[0] for a in rest] == ["cleared"]


def test_openings_spread_beyond_the_flap_window_are_ordinary_cases() -> None:
    feed = Feed(FLAPPY)
    out = []
    for n in range(4):
        out += feed.series([30, 30, 30, 1], start=n * 900)
    assert [a[0] for a in out] == ["open", "cleared"] * 4


BURST = rules_yaml(
    rule(
        "when: {field: pressure_mpa, below: 0.2}, hold: 5, group: {within_m: 1200, window: 5m}",
        kind="pressure",
    ).replace("case: {category: component}", "case: {category: event, code: '0402'}")
)


def _pressure(t: float, value: float, sensor: str) -> object:
    return at(t, value, sensor, kind="pressure", field="pressure_mpa")


def test_a_burst_felt_by_neighbours_is_one_case_naming_all_of_them() -> None:
    feed = Feed(BURST, locate=locate)
    out = []
    for t in range(40):
        readings = [_pressure(t, 0.30, f"p{i}") for i in range(6)]
        if t >= 2:
            readings[0] = _pressure(t, 0.10, "p0")
        if t >= 4:
            readings[1] = _pressure(t, 0.15, "p1")  # 500 m away
            readings[2] = _pressure(t, 0.18, "p2")  # 1 km away
            readings[5] = _pressure(t, 0.19, "p5")  # 2.5 km away: its own incident
        out += feed.send(*readings)
    assert [(a[0], a[1]) for a in out] == [
        ("open", "p0"),
        ("member", "p0"),
        ("member", "p0"),
        ("open", "p5"),
    ]
    members = feed.alerts[2].members
    assert members == ("p0", "p1", "p2")
    # the incident clears when its last member recovers
    tail = []
    for t in range(40, 50):
        readings = [_pressure(t, 0.30, f"p{i}") for i in range(5)]
        readings[2] = _pressure(t, 0.18 if t < 45 else 0.30, "p2")
        tail += feed.send(*readings)
    assert [(a[0], a[1], a[3]) for a in tail] == [("cleared", "p0", 45)]


def test_at_least_k_sensors_within_r_metres() -> None:
    text = BURST.replace("window: 5m}", "window: 5m, min_sensors: 2}")
    feed = Feed(text, locate=locate)
    alone = []
    for t in range(30):
        alone += feed.send(_pressure(t, 0.1, "p0"), _pressure(t, 0.3, "p1"))
    assert alone == []
    both = []
    for t in range(30, 40):
        both += feed.send(_pressure(t, 0.1, "p0"), _pressure(t, 0.1, "p1"))
    assert [(a[0], a[1]) for a in both] == [("open", "p0")]
    assert feed.alerts[0].members == ("p0", "p1")


def test_sensors_without_a_known_location_open_cases_of_their_own() -> None:
    feed = Feed(BURST)  # no locator
    out = []
    for t in range(10):
        out += feed.send(_pressure(t, 0.1, "p0"), _pressure(t, 0.1, "p1"))
    assert [(a[0], a[1]) for a in out] == [("open", "p0"), ("open", "p1")]


def test_an_alert_carries_where_it_began_its_evidence_and_the_threshold() -> None:
    feed = Feed(rules_yaml(rule("when: {field: tilt_deg, above: 20}, hold: 3")))
    feed.series([1, 70, 71, 72, 73])
    (alert,) = feed.alerts
    assert alert.started_at == T0 + timedelta(seconds=1)
    assert alert.at == T0 + timedelta(seconds=4)
    assert [e.value for e in alert.evidence] == [70, 71, 72, 73]
    assert alert.threshold == 20
    assert alert.target.category == "component"
    assert alert.members == ("c1",)


def test_values_a_kind_does_not_have_are_counted() -> None:
    """The wire contract refuses such a reading; the engine, fed from elsewhere (an old
    recording, a test), still counts it rather than evaluate nothing silently."""
    feed = Feed(rules_yaml(rule("when: {field: tilt_deg, above: 20}")))
    good = at(0, 1, "c1")
    foreign = Reading.model_construct(
        sensor_id="c1", kind=good.kind, ts=good.ts, values={"tilt": 80.0}
    )
    feed.send(foreign)
    assert feed.engine.stats.unknown_value == 1
    assert feed.engine.stats.missing_field == 1
    assert feed.alerts == []


def test_disabled_rules_are_not_evaluated() -> None:
    text = rules_yaml(rule("when: {field: tilt_deg, above: 20}, enabled: false"))
    assert Feed(text).series([80, 80]) == []
    assert parse_rules(text).rules[0].enabled is False
