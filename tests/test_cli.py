import subprocess
import sys


def test_help_lists_the_subcommands_without_any_service() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "citysense.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/nonexistent", "COLUMNS": "120"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("demo", "serve", "edge", "simulate", "record", "replay", "backtest", "score"):
        assert command in result.stdout


def test_edge_refuses_an_unknown_station_with_the_list_of_known_ones() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "citysense.cli", "edge", "st-nowhere", "--mqtt-port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 2
    assert "st-410102-001" in result.stderr + result.stdout
