"""Inherited thresholds: kind -> district -> station -> sensor, what ``explain`` says, and the
engine evaluating each sensor by its own effective rules (plain and batched paths alike)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bench.engine import traffic
from rules import ClockPolicy, RuleEngine, RuleError, load_rules, parse_rules, restore, snapshot
from rules.inherit import Scope, effective, explain, merge
from rules.schema import RuleSet
from tests.factories import T0
from tests.rules.harness import Feed, at
from tests.rules.test_batch import MESSY, assert_same, chunks

BASE = """
rules:
  - id: cover-open
    title: t
    kind: cover
    case: {category: component}
    when: {field: tilt_deg, above: 20}
    hold: 10s
    clear: {when: {field: tilt_deg, below: 8}, hold: 10s}
"""


def with_overrides(*items: str) -> RuleSet:
    return parse_rules(BASE + "overrides:\n" + "".join(f"  - {i}\n" for i in items), "t.yaml")


LEVELS = with_overrides(
    '{rule: cover-open, district: "410105", set: {when: {above: 30}, hold: 40s}, note: busy}',
    "{rule: cover-open, station: st-1, set: {clear: {hold: 1m}}}",
    "{rule: cover-open, sensor: st-1.c1, set: {when: {above: 35}}}",
)


def settings(rules: RuleSet, sensor: str, district: str | None) -> dict[str, tuple[object, str]]:
    (one,) = effective(rules, Scope.of(sensor, district))
    return {s.path: (s.value, s.source.label()) for s in one.settings}


def test_the_most_specific_level_wins_setting_by_setting() -> None:
    found = settings(LEVELS, "st-1.c1", "410105")
    assert found["when.above"] == (35.0, "sensor st-1.c1")
    assert found["hold"] == (40.0, "district 410105")
    assert found["clear.hold"] == (60.0, "station st-1")
    assert found["clear.when.below"] == (8.0, "kind (the rule)")
    assert found["when.field"] == ("tilt_deg", "kind (the rule)")
    assert found["stale_after"] == (26 * 3600.0, "default")


def test_a_sensor_elsewhere_has_only_the_levels_that_apply_to_it() -> None:
    other_station = settings(LEVELS, "st-2.c1", "410105")
    assert other_station["when.above"] == (30.0, "district 410105")
    assert other_station["clear.hold"] == (10.0, "kind (the rule)")
    nowhere = settings(LEVELS, "st-2.c1", None)
    assert nowhere["when.above"] == (20.0, "kind (the rule)")
    assert nowhere["hold"] == (10.0, "kind (the rule)")


def test_explain_is_a_json_document_with_notes() -> None:
    doc = explain(LEVELS, Scope.of("st-1.c1", "410105"), "cover")
    assert doc["station_id"] == "st-1"
    assert doc["district"] == "410105"
    (rule,) = doc["rules"]
    hold = next(s for s in rule["settings"] if s["path"] == "hold")
    assert hold == {
        "path": "hold",
        "value": 40.0,
        "level": "district",
        "scope": "410105",
        "note": "busy",
    }
    assert explain(LEVELS, Scope.of("st-1.p1"), "pole")["rules"] == []


def test_a_threshold_replaces_the_test_above_it_and_mappings_merge() -> None:
    assert merge({"field": "f", "above": 20}, {"below": 5}) == {"field": "f", "below": 5}
    assert merge({"when": {"field": "f", "above": 1}, "hold": 3}, {"when": {"above": 2}}) == {
        "when": {"field": "f", "above": 2},
        "hold": 3,
    }
    assert merge({"when": {"all": [1]}}, {"when": {"all": [2, 3]}}) == {"when": {"all": [2, 3]}}


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("{rule: nope, station: st-1, set: {hold: 1}}", "override of 'nope' for station st-1: no"),
        (
            "{rule: cover-open, station: st-1, set: {when: {field: water, above: 1}}}",
            "field 'water' is not a cover value",
        ),
        ("{rule: cover-open, station: st-1, set: {kind: pole}}", "an override cannot change kind"),
        ("{rule: cover-open, station: st-1, sensor: a.b, set: {hold: 1}}", "exactly one of"),
        ("{rule: cover-open, district: '4101', set: {hold: 1}}", "district"),
        (
            "{rule: cover-open, station: st-1, set: {count: {n: 2, of: 3}}}",
            "count and hold/steady are two ways",
        ),
    ],
)
def test_an_override_that_cannot_apply_is_refused_with_its_reason(item: str, reason: str) -> None:
    with pytest.raises(RuleError) as caught:
        with_overrides(item)
    assert any(reason in line for line in caught.value.reasons), caught.value.reasons


def test_every_bad_override_is_named_and_twice_is_refused() -> None:
    with pytest.raises(RuleError) as caught:
        with_overrides(
            "{rule: nope, station: st-1, set: {hold: 1}}",
            "{rule: cover-open, station: st-1, set: {hold: 1}}",
            "{rule: cover-open, station: st-1, set: {hold: 2}}",
        )
    assert caught.value.reasons == [
        "override of 'nope' for station st-1: no such rule (the file has cover-open)",
        "override of 'cover-open' for station st-1 is given twice",
    ]


def test_levels_that_only_clash_together_are_left_out_and_named() -> None:
    rules = with_overrides(
        '{rule: cover-open, district: "410105", set: {hold: 0, count: {n: 2, of: 3}}}',
        "{rule: cover-open, station: st-1, set: {hold: 30s}}",  # hold and count together
    )
    (one,) = effective(rules, Scope.of("st-1.c1", "410105"))
    assert one.rule.count is not None
    assert one.rule.hold == 0
    assert one.ignored == (
        "override of 'cover-open' for station st-1: count and hold/steady are two ways to"
        " debounce: give one",
    )


# -- the engine ---------------------------------------------------------------------------------


def opened(feed: Feed) -> list[str]:
    return sorted(a.sensor_id for a in feed.alerts if a.state == "open")


def test_each_sensor_is_evaluated_by_its_own_thresholds() -> None:
    feed = Feed(BASE, engine=RuleEngine(LEVELS, district_of=lambda s: "410105" * s.endswith("3")))
    for t in range(60):  # 32° for a minute: above 20 and 30, not 35
        feed.send(
            at(t, 32.0, "st-1.c1"), at(t, 32.0, "st-1.c2"), at(t, 32.0, "st-1.c3"), station="st-1"
        )
        feed.send(at(t, 25.0, "st-2.c3"), at(t, 25.0, "st-2.c4"), station="st-2")
    # c1: its own 35 ; c2: the kind's 20 ; c3: the district's 30 (and 40 s) ;
    # st-2.c3: 25 is below its district's 30 ; st-2.c4: above the kind's 20
    assert opened(feed) == ["st-1.c2", "st-1.c3", "st-2.c4"]
    starts = {a.sensor_id: (a.at - a.started_at).total_seconds() for a in feed.alerts}
    assert starts == {"st-1.c2": 10.0, "st-1.c3": 40.0, "st-2.c4": 10.0}
    thresholds = {a.sensor_id: a.threshold for a in feed.alerts}
    assert thresholds == {"st-1.c2": 20.0, "st-1.c3": 30.0, "st-2.c4": 20.0}


def test_an_override_can_switch_a_rule_off_for_one_sensor_or_on_for_one_station() -> None:
    off = with_overrides("{rule: cover-open, sensor: st-1.c1, set: {enabled: false}}")
    feed = Feed(BASE, engine=RuleEngine(off))
    feed.series([25.0] * 30, sensor="st-1.c1")
    feed.series([25.0] * 30, sensor="st-1.c2")
    assert opened(feed) == ["st-1.c2"]
    text = BASE.replace("clear:", "enabled: false\n    clear:")
    on = parse_rules(
        text + "overrides:\n  - {rule: cover-open, station: st-1, set: {enabled: true}}\n", "t"
    )
    feed = Feed(text, engine=RuleEngine(on))
    feed.series([25.0] * 30, sensor="st-1.c1")
    feed.send(*(at(t, 25.0, "st-2.c1") for t in range(30)), station="st-2")
    assert opened(feed) == ["st-1.c1"]


def test_a_birth_that_moves_a_sensor_to_a_district_moves_its_pending_hold() -> None:
    """Seen before its station's birth, a sensor waits on the kind's 10 s; once the birth
    names its district, the district's 40 s applies, and the timer set for it fires."""
    districts: dict[str, str] = {}
    engine = RuleEngine(LEVELS, district_of=districts.get)
    engine.process("st-2", [at(t, 32.0, "st-2.c1") for t in range(5)], T0 + timedelta(seconds=5))
    districts["st-2.c1"] = "410105"
    engine.note_birth("st-2", T0)
    assert engine.advance("st-2", T0 + timedelta(seconds=30)) == []  # 10 s passed: not due
    (alert,) = engine.advance("st-2", T0 + timedelta(seconds=60))
    assert (alert.state, (alert.at - T0).total_seconds()) == ("open", 40.0)


def test_a_restart_remembers_the_district_before_the_birth_comes_again() -> None:
    districts = {"st-2.c1": "410105"}
    engine = RuleEngine(LEVELS, district_of=districts.get, clock=ClockPolicy(allowed_lateness=0))
    engine.process("st-2", [at(t, 32.0, "st-2.c1") for t in range(5)], T0 + timedelta(seconds=5))
    assert engine.state_counts()["buffered"] == 0
    again = restore(LEVELS, snapshot(engine))  # the registry is empty after a restart
    again.set_locator(lambda _s: None, lambda _s: None)
    assert again.advance("st-2", T0 + timedelta(seconds=30)) == []
    (alert,) = again.advance("st-2", T0 + timedelta(seconds=60))
    assert (alert.state, (alert.at - T0).total_seconds()) == ("open", 40.0)
    assert snapshot(again) == snapshot(restore(LEVELS, snapshot(again)))


def test_without_overrides_the_engine_shares_the_kinds_rules() -> None:
    engine = RuleEngine(load_rules())
    engine.process("st-1", [at(0, 1.0, "st-1.c1")], T0)
    assert not engine.has_overrides("st-1.c1")


def test_the_batched_path_gives_what_the_plain_path_gives_with_overrides() -> None:
    defaults = load_rules()
    document = defaults.model_dump(mode="json", exclude_unset=True)
    document["overrides"] = [
        {"rule": "cover-open", "station": "eb-00010", "set": {"when": {"above": 80}}},
        {"rule": "cover-open", "station": "eb-00007", "set": {"enabled": False}},
        {"rule": "cover-open", "station": "eb-00001", "set": {"hold": "1s", "steady": 40}},
        {"rule": "pole-fall", "station": "eb-00009", "set": {"hold": "10m"}},
        {"rule": "water-main-burst", "station": "eb-00004", "set": {"when": {"drop": 0.5}}},
    ]
    rules = RuleSet.model_validate(document)
    batches = traffic(MESSY)
    found = {(a.station_id, a.rule_id) for a in assert_same(rules, batches, chunks(batches, 50))}
    before = {
        (a.station_id, a.rule_id) for a in assert_same(defaults, batches, chunks(batches, 50))
    }
    gone = {("eb-00010", "cover-open"), ("eb-00007", "cover-open"), ("eb-00009", "pole-fall")}
    assert before - found == gone | {("eb-00004", "water-main-burst")}
    assert found - before == {("eb-00001", "cover-open")}  # its rocking cover, held 1 s
