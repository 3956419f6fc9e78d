from datetime import timedelta

import pytest

from simulator.scenario import ScenarioError, parse_scenario

BASE = """
name: t
seed: 1
start: 2026-07-01T08:00:00+08:00
duration: 30m
"""


def test_durations_accept_seconds_and_units() -> None:
    scenario = parse_scenario(
        BASE + "incidents: [{kind: cover_open, start: 90, duration: 1.5h}]\nedge: {tick: 500ms}"
    )
    (incident,) = scenario.incidents
    assert incident.start == timedelta(seconds=90)
    assert incident.duration == timedelta(hours=1.5)
    assert scenario.edge.tick == timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("incidents: [{kind: meteor, start: 1m, duration: 1m}]", "incidents.0.kind"),
        ("incidents: [{kind: cover_open, start: 1m, duration: 0s}]", "incidents.0.duration"),
        ("incidents: [{kind: cover_open, start: 40m, duration: 1m}]", "starts after"),
        ("faults: [{kind: station_offline, start: 1m, duration: 1m}]", "needs a station"),
        ("faults: [{kind: station_offline, station: random, start: 1m}]", "needs a duration"),
        ("faults: [{kind: stuck_sensor, start: 1m, duration: 1m}]", "needs a sensor"),
        ("faults: [{kind: clock_skew, station: random, start: 1m}]", "non-zero offset"),
        ("faults: [{kind: garbage, station: random, start: 1m, count: 0}]", "faults.0.count"),
        ("incidents: [{kind: cover_open, start: 5 minutes, duration: 1m}]", "not a number"),
        ("colour: red", "colour"),
        ("city: {wind: stormy}", "city.wind: Input should be 'calm', 'breezy' or 'gusty'"),
        ("city: {loose_covers: 1.5}", "city.loose_covers: Input should be less than or equal"),
        ("city: {day_length: 2d}", "city.day_length: Input should be less than or equal"),
        ("city: {day_length: 0s}", "city.day_length: Input should be greater than"),
        ("city: {reporting: {tree: exception}}", "city.reporting.tree.\\[key\\]"),
        ("city: {reporting: {cover: sometimes}}", "city.reporting.cover: Input should be"),
    ],
)
def test_mistakes_are_reported_with_where_and_why(extra: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(BASE + extra, "bad.yaml")


def test_not_yaml_is_a_scenario_error() -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        parse_scenario("name: [", "x.yaml")


def test_the_street_options_parse() -> None:
    scenario = parse_scenario(
        BASE
        + "city: {loose_covers: 0.2, wind: gusty, day_length: 2h, reporting: {cover: exception}}"
    )
    city = scenario.city
    assert (city.loose_covers, city.wind, city.day_length) == (0.2, "gusty", timedelta(hours=2))
    assert city.reporting == {"cover": "exception"}
    default = parse_scenario(BASE).city
    assert (default.loose_covers, default.wind, default.day_length) == (
        0.15,
        "breezy",
        timedelta(1),
    )
