"""What the CLI prints for people: no raw Python structures, counts that match their tables,
and options that do what they say (``simulate --seed`` over the scenario file's seed)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from citysense.cli import app

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "cover-open.yaml"


def test_simulate_seed_wins_over_the_files_and_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["simulate", str(SCENARIO), "--out", str(tmp_path), "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "seed 3 (the scenario file says 7)" in result.stderr
    assert "cover-open (seed 3):" in result.stdout
    assert "{" not in result.stdout  # counts in words, not a dict
    truth = json.loads((tmp_path / "cover-open.truth.json").read_text(encoding="utf-8"))
    assert truth["seed"] == 3
    again = CliRunner().invoke(app, ["simulate", str(SCENARIO), "--out", str(tmp_path / "b")])
    assert "cover-open (seed 7):" in again.stdout
    assert again.stderr == ""


def test_replay_info_counts_topics_as_its_table_groups_them(tmp_path: Path) -> None:
    CliRunner().invoke(app, ["simulate", str(SCENARIO), "--out", str(tmp_path)])
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "cover-open.csrec"), "--info"])
    assert result.exit_code == 0, result.output
    assert "4 topics in 2 patterns" in result.stdout
    assert "citysense/v1/stations/+/telemetry" in result.stdout
    assert "citysense/v1/stations/+/state" in result.stdout
