"""The pure core of remote config: thresholds checked against the station's rules, the rule
engine's pending state carried over, report-by-exception merged over the local settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edge.exception import KindOverride, ReportSettings
from edge.remote_config import ConfigError, RunSettings, resolve, swap_rules, with_thresholds
from protocol import SensorKind, StationConfig
from protocol.models import KindReportConfig, ReportConfig
from rules import ClockPolicy, RuleEngine, RuleSet, load_rules
from tests.factories import T0, tilt
from tests.serve_process import QUICK_RULES

RULES = load_rules()


def _limits(rules: RuleSet) -> dict[str, tuple[float | None, float | None]]:
    out = {}
    for rule in rules.rules:
        watched = rule.watched()
        if watched:
            out[rule.id] = (watched[0].above, watched[0].below)
    return out


def test_a_threshold_override_changes_that_limit_only() -> None:
    edited = with_thresholds(RULES, {"cover-open": {"tilt_deg": 12.0}})
    assert _limits(edited)["cover-open"] == (12.0, None)
    assert _limits(RULES)["cover-open"] == (20.0, None)  # the local rules are left alone
    assert [r for r in edited.rules if r.id != "cover-open"] == [
        r for r in RULES.rules if r.id != "cover-open"
    ]


def test_a_rule_testing_a_value_twice_takes_a_named_limit() -> None:
    with pytest.raises(ConfigError, match=r"tilt_deg\.above or tilt_deg\.below"):
        with_thresholds(RULES, {"pole-tilt": {"tilt_deg": 4.0}})
    edited = with_thresholds(RULES, {"pole-tilt": {"tilt_deg.above": 4.0}})
    leaves = edited.rule("pole-tilt").watched()
    assert [(leaf.above, leaf.below) for leaf in leaves] == [(4.0, None), (None, 15.0)]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"no-such-rule": {"tilt_deg": 1.0}}, "unknown rule no-such-rule"),
        ({"cover-open": {"gas_ppm": 1.0}}, "no above/below limit on 'gas_ppm'"),
        ({"cover-open": {"tilt_deg.below": 1.0}}, "no above/below limit on 'tilt_deg.below'"),
        ({"water-main-burst": {"pressure_mpa": 0.1}}, "water-main-burst"),
        ({"cover-open": {"tilt_deg": 6.0}}, "clear condition (below 8)"),
    ],
)
def test_a_threshold_the_rules_cannot_take_is_rejected(
    overrides: dict[str, dict[str, float]], reason: str
) -> None:
    with pytest.raises(ConfigError) as rejected:
        with_thresholds(RULES, overrides)
    assert reason in str(rejected.value)


def test_a_rule_swap_keeps_a_pending_hold() -> None:
    rules = load_rules(QUICK_RULES)  # cover-open: above 15 for 3 s
    engine = RuleEngine(rules, clock=ClockPolicy(allowed_lateness=0.0))
    engine.process("st-1", [tilt(0, 40.0)], T0)
    engine.process("st-1", [tilt(2, 40.0)], T0 + timedelta(seconds=2))
    swapped = swap_rules(engine, with_thresholds(rules, {"cover-open": {"tilt_deg": 30.0}}))
    assert swapped is not engine
    alerts = swapped.process("st-1", [tilt(3.5, 40.0)], T0 + timedelta(seconds=3.5))
    assert [a.state for a in alerts] == ["open"]  # the hold began before the swap
    fresh = RuleEngine(swapped.rules, clock=ClockPolicy(allowed_lateness=0.0))
    assert fresh.process("st-1", [tilt(3.5, 40.0)], T0 + timedelta(seconds=3.5)) == []
    assert swap_rules(swapped, swapped.rules) is swapped  # unchanged rules: the same engine


def test_remote_report_settings_merge_over_the_local_ones() -> None:
    local = RunSettings(
        1.0,
        1.0,
        ReportSettings(kinds={SensorKind.POLE: KindOverride(alarm_above={"tilt_deg": 2.0})}),
        RULES,
    )
    config = StationConfig(
        station_id="st-1",
        config_version=2,
        sample_interval_s=0.25,
        report=ReportConfig(
            kinds={SensorKind.POLE: KindReportConfig(heartbeat_s=10, deadband={"tilt_deg": 0.5})}
        ),
    )
    run = resolve(local, config)
    assert (run.sample_interval, run.batch_interval, run.rules) == (0.25, 1.0, RULES)
    pole = run.report.policy(SensorKind.POLE)
    assert pole.heartbeat_s == 10
    assert pole.deadband["tilt_deg"] == 0.5
    assert pole.alarm_above["tilt_deg"] == 2.0  # alarm limits stay local
    assert resolve(local, None) is local
