"""Rule files: every mistake is refused with the file, the rule and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules import DEFAULT_RULES_FILE, RuleError, load_rules, parse_rules
from tests.rules.harness import rule, rules_yaml


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "when: {field: tilt, above: 5}",
            "test.yaml: rule 'r': field 'tilt' is not a cover value; cover readings carry"
            " battery_v, gas_ppm, signal_dbm, tilt_deg, water_level_m",
        ),
        ("when: {field: tilt_deg}", "rule 'r': when: give exactly one of above"),
        ("when: {field: tilt_deg, above: 5, below: 2}", "got above, below"),
        ("when: {field: tilt_deg, outside: [5, 2]}", "low < high"),
        ("hold: 3", "either a when condition or no_data"),
        ("when: {field: tilt_deg, above: 5}, no_data: 60", "either a when condition or no_data"),
        ("when: {field: tilt_deg, above: 5}, hold: 5x", "hold: duration '5x' is not"),
        ("when: {field: tilt_deg, above: 5}, hold: 3, count: {n: 2, of: 3}", "two ways"),
        ("when: {field: tilt_deg, above: 5}, count: {n: 4, of: 3}", "must not exceed"),
        ("when: {field: tilt_deg, above: 5}, count: {n: 2}", "exactly one of of"),
        (
            "when: {all: [{field: tilt_deg, above: 5}, {field: gas_ppm, above: 1}]}, steady: 2",
            "steady needs a condition on one value",
        ),
        (
            "when: {field: tilt_deg, above: 5}, clear: {when: {field: tilt_deg, drop: 1}}",
            "plain thresholds",
        ),
        ("when: {field: tilt_deg, above: 5}, sustain_s: 3", "sustain_s: Extra inputs"),
        ("when: {any: [{field: nope, above: 1}]}", "field 'nope' is not a cover value"),
    ],
)
def test_bad_rules_are_refused_with_file_rule_and_reason(body: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(rules_yaml(rule(body)), "test.yaml")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not valid YAML"),
        ("rules: []", "at least 1"),
        (rules_yaml(rule("when: {field: tilt_deg, above: 5}")) * 1 + "  - {id: r}\n", "rule 'r'"),
        (
            rules_yaml(rule("when: {field: tilt_deg, above: 5}").replace("component}", "event}")),
            "needs its class code",
        ),
        (
            rules_yaml(
                rule("when: {field: tilt_deg, above: 5}").replace(
                    "component}", "component, code: '0199'}"
                )
            ),
            "unknown GB/T 30428",
        ),
    ],
)
def test_bad_rule_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rules(text, "test.yaml")


def test_duplicate_ids_are_refused() -> None:
    text = rules_yaml(
        rule("when: {field: tilt_deg, above: 5}"), rule("when: {field: tilt_deg, above: 9}")
    )
    with pytest.raises(RuleError, match="duplicate rule ids: r"):
        parse_rules(text)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(RuleError, match=r"cannot read rules file /nonexistent\.yaml"):
        load_rules(Path("/nonexistent.yaml"))


def test_default_rules_cover_every_kind_with_a_class_and_severity() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    kinds = {r.kind.value for r in rules.rules}
    assert kinds == {"cover", "pressure", "pole"}
    by_id = {r.id: r for r in rules.rules}
    assert by_id["cover-site-flooding"].case.code == "0406"
    assert by_id["water-main-burst"].case.code == "0402"
    assert by_id["water-main-burst"].group is not None
    assert by_id["pole-fall"].severity == "critical"
    assert by_id["pole-tilt"].severity == "urgent"
    assert by_id["pole-creep"].severity == "maintenance"
    assert by_id["cover-gas"].case.code == "0403"
