"""Each condition kind, at its threshold, with gaps, and with its clear condition."""

from __future__ import annotations

import math

import pytest

from tests.rules.harness import Feed, at, rule, rules_yaml

ABOVE_20_HOLD_3 = rules_yaml(rule("when: {field: tilt_deg, above: 20}, hold: 3"))


def test_exactly_at_the_threshold_is_not_above_it() -> None:
    feed = Feed(ABOVE_20_HOLD_3)
    assert feed.series([20.0] * 10) == []
    assert feed.series([20.001] * 5, start=10) == [("open", "c1", 10, 13)]


def test_hold_is_met_exactly_at_hold_seconds_of_event_time() -> None:
    feed = Feed(ABOVE_20_HOLD_3)
    assert feed.series([1, 1, 30, 30, 30]) == []
    assert feed.series([30], start=5) == [("open", "c1", 2, 5)]


def test_a_dip_restarts_the_hold_and_a_clear_ends_the_alert() -> None:
    feed = Feed(ABOVE_20_HOLD_3)
    assert feed.series([30, 30, 30, 5, 30, 30, 30, 30, 5]) == [
        ("open", "c1", 4, 7),
        ("cleared", "c1", 4, 8),
    ]


@pytest.mark.parametrize(
    ("test", "values", "opens"),
    [
        ("below: 0.14", [0.2, 0.14, 0.139, 0.1], True),
        ("below: 0.14", [0.2, 0.14, 0.14, 0.15], False),
        ("outside: [0.14, 0.5]", [0.3, 0.5, 0.51], True),
        ("outside: [0.14, 0.5]", [0.14, 0.5, 0.3], False),
    ],
)
def test_below_and_outside_a_range(test: str, values: list[float], opens: bool) -> None:
    text = rules_yaml(rule(f"when: {{field: pressure_mpa, {test}}}", kind="pressure"))
    alerts = Feed(text).series(values, kind="pressure", field="pressure_mpa")
    assert bool(alerts) is opens


def test_separate_clear_condition_with_its_own_duration() -> None:
    text = rules_yaml(
        rule(
            "when: {field: tilt_deg, above: 20}, hold: 2,"
            " clear: {when: {field: tilt_deg, below: 8}, hold: 5}"
        )
    )
    feed = Feed(text)
    # 15 is in the hysteresis band: still open; 5 s below 8 clears it, 3 s do not
    opened = feed.series([30, 30, 30, 15, 15, 7, 7, 7, 30, 7, 7, 7, 7, 7, 7, 7])
    assert opened == [("open", "c1", 0, 2), ("cleared", "c1", 0, 14)]


def test_steady_band_tells_a_displaced_cover_from_a_rocking_one() -> None:
    text = rules_yaml(rule("when: {field: tilt_deg, above: 20}, hold: 5, steady: 8"))
    rocking = [35, 22, 40, 25, 38, 21, 33, 29, 40, 24, 36, 22]
    assert Feed(text).series(rocking) == []
    displaced = [74, 75, 76, 75, 74, 75, 76]
    assert Feed(text).series(displaced) == [("open", "c1", 0, 5)]


def test_n_of_m_readings() -> None:
    text = rules_yaml(rule("when: {field: tilt_deg, above: 20}, count: {n: 3, of: 5}"))
    assert Feed(text).series([30, 1, 1, 1, 30, 1, 1, 1, 30]) == []
    assert Feed(text).series([30, 1, 30, 1, 30]) == [("open", "c1", 0, 4)]


def test_n_within_a_window() -> None:
    text = rules_yaml(rule("when: {field: tilt_deg, above: 20}, count: {n: 3, within: 10s}"))
    assert Feed(text).series([30, None, None, None, None, None, 30, None, None, None, 30]) == []
    assert Feed(text).series([30, None, 30, None, 30]) == [("open", "c1", 0, 4)]


def test_rate_of_change() -> None:
    text = rules_yaml(
        rule("when: {field: pressure_mpa, rate_below: -0.002}, hold: 0", kind="pressure")
    )
    slow = [0.30 - 0.0001 * i for i in range(20)]
    assert Feed(text).series(slow, kind="pressure", field="pressure_mpa", step=5) == []
    sharp = [0.30, 0.30, 0.25, 0.22, 0.22]
    opened = Feed(text).series(sharp, kind="pressure", field="pressure_mpa", step=5)
    assert opened[0] == ("open", "c1", 10, 10)


def test_and_or_over_one_sensors_values() -> None:
    text = rules_yaml(
        rule(
            "when: {any: [{field: gas_ppm, above: 2500},"
            " {all: [{field: water_level_m, above: 1.5}, {field: tilt_deg, above: 20}]}]}"
        )
    )
    feed = Feed(text)
    assert feed.send(at(0, water_level_m=1.6, tilt_deg=5)) == []
    assert feed.send(at(1, water_level_m=1.6, tilt_deg=25)) == [("open", "c1", 1, 1)]
    other = Feed(text)
    assert other.send(at(0, None, "c2", gas_ppm=3000, tilt_deg=1)) == [("open", "c2", 0, 0)]


def _pressure_day(day: int, *, dip: bool) -> list[tuple[float, float]]:
    """One day of 60 s readings (Beijing local time) with, optionally, a pump that drops the
    pressure by 0.05 MPa within a minute at 08:00 every day for half an hour."""
    out = []
    for minute in range(24 * 60):
        t = day * 86_400 + minute * 60 - 8 * 3600  # T0 is 08:00 UTC; start at local midnight
        local_minute = minute
        value = 0.32 - 0.02 * math.sin(2 * math.pi * local_minute / 1440)
        if dip and 8 * 60 <= local_minute < 8 * 60 + 30:
            value -= 0.05
        out.append((float(t), value))
    return out


def test_drop_from_baseline_catches_a_burst_and_not_the_daily_cycle() -> None:
    text = rules_yaml(
        rule(
            "when: {field: pressure_mpa, drop: 0.03, baseline: {tau: 60s}}, hold: 120",
            kind="pressure",
        )
    )
    feed = Feed(text)
    readings = [
        at(t, v, "p1", kind="pressure", field="pressure_mpa")
        for t, v in _pressure_day(0, dip=False)
    ]
    assert feed.each(readings) == []
    burst = [
        at(86_400 + i * 60.0, 0.22, "p1", kind="pressure", field="pressure_mpa") for i in range(5)
    ]
    assert [a[0] for a in feed.each(burst)] == ["open"]


def test_time_of_day_profile_learns_a_daily_dip() -> None:
    text = rules_yaml(
        rule(
            "when: {field: pressure_mpa, drop: 0.03, baseline: {tau: 60s, learn_days: 1}},"
            " hold: 120",
            kind="pressure",
        )
    )
    feed = Feed(text)
    opens_per_day = []
    for day in range(8):
        readings = [
            at(t, v, "p1", kind="pressure", field="pressure_mpa")
            for t, v in _pressure_day(day, dip=True)
        ]
        opens_per_day.append(sum(1 for a in feed.each(readings) if a[0] == "open"))
    assert opens_per_day[0] == 1, opens_per_day  # new pattern: alarmed the first day
    assert opens_per_day[-1] == 0, opens_per_day  # learned: the usual 08:00 level


def test_drop_without_profile_keeps_alarming_on_a_daily_dip() -> None:
    text = rules_yaml(
        rule(
            "when: {field: pressure_mpa, drop: 0.03, baseline: {tau: 60s, profile: false}},"
            " hold: 120",
            kind="pressure",
        )
    )
    feed = Feed(text)
    opens = 0
    for day in range(3):
        readings = [
            at(t, v, "p1", kind="pressure", field="pressure_mpa")
            for t, v in _pressure_day(day, dip=True)
        ]
        opens += sum(1 for a in feed.each(readings) if a[0] == "open")
    assert opens == 3
