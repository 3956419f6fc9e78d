"""`citysense rules check` and `citysense rules explain`: every reason, and which level each
setting of a sensor's rules comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citysense.cli import app

RULES = """
rules:
  - id: cover-open
    title: t
    kind: cover
    case: {category: component}
    when: {field: tilt_deg, above: 20}
    hold: 20s
overrides:
  - {rule: cover-open, district: "410105", set: {hold: 40s}, note: busy road}
  - {rule: cover-open, sensor: eb-0042.cover-03, set: {when: {above: 35}}}
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "city.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def test_explain_names_the_level_of_each_setting(rules_file: Path) -> None:
    args = ["rules", "explain", "eb-0042.cover-03", "--rules", str(rules_file)]
    result = CliRunner().invoke(app, [*args, "--district", "410105", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["station_id"] == "eb-0042"
    found = {s["path"]: (s["value"], s["level"]) for s in document["rules"][0]["settings"]}
    assert found["when.above"] == (35.0, "sensor")
    assert found["hold"] == (40.0, "district")
    assert found["when.field"] == ("tilt_deg", "kind")
    table = CliRunner().invoke(app, [*args, "--district", "410105"])
    assert "district 410105" in table.stdout
    assert "busy road" in table.stdout
    elsewhere = CliRunner().invoke(app, ["rules", "explain", "eb-7.c1", "--rules", str(rules_file)])
    assert "district" not in elsewhere.stdout


def test_check_lists_every_reason_and_exits_2(tmp_path: Path, rules_file: Path) -> None:
    ok = CliRunner().invoke(app, ["rules", "check", str(rules_file)])
    assert ok.exit_code == 0
    assert ok.stdout == f"{rules_file}: ok (1 rule, 2 overrides)\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        RULES + "  - {rule: gone, station: eb-1, set: {hold: 1}}\n"
        "  - {rule: cover-open, station: eb-1, set: {kind: pole}}\n",
        encoding="utf-8",
    )
    refused = CliRunner().invoke(app, ["rules", "check", str(bad)])
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1  # the scope check stops pydantic before the rule set's own checks
    assert "an override cannot change kind" in lines[0]
    bad.write_text(RULES + "  - {rule: gone, station: eb-1, set: {hold: 1}}\n", encoding="utf-8")
    refused = CliRunner().invoke(app, ["rules", "check", str(bad)])
    assert refused.stderr.strip().splitlines() == [
        f"{bad}: override of 'gone' for station eb-1: no such rule (the file has cover-open)"
    ]


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        (["--kind", "lamp"], 2, "--kind"),
        (["--district", "41"], 2, "--district"),
        (["--api", "http://127.0.0.1:9"], 2, "cannot reach"),  # a node that is not there
        (["--api", "http://127.0.0.1:9", "--district", "410105"], 2, "--api"),
        (["--api", "127.0.0.1:8000"], 2, "--api"),
    ],
)
def test_explain_refuses_bad_options_with_exit_2(args: list[str], code: int, names: str) -> None:
    result = CliRunner().invoke(app, ["rules", "explain", "eb-1.c1", *args])
    assert result.exit_code == code
    assert names in result.output
