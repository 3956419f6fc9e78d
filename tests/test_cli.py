import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from citysense.broker import MosquittoBroker, free_port


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


@pytest.mark.integration
def test_serve_reads_its_environment_and_stops_on_ctrl_c(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CITYSENSE_INGEST_MQTT_PORT": str(mosquitto.port),
        "CITYSENSE_INGEST_CLIENT_ID": f"ingest-serve-{port}",
        "CITYSENSE_INGEST_DEAD_LETTER_PATH": str(tmp_path / "dead.jsonl"),
        "CITYSENSE_INGEST_SNAPSHOT_PATH": str(tmp_path / "rules.snapshot"),
        "CITYSENSE_SINK_RECORDER_DIR": str(tmp_path / "journal"),
        "CITYSENSE_CENTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}",
        "CITYSENSE_CENTER_PORT": str(port),
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "citysense.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def broker_ok() -> bool:
        """The public probe: the status and each check's ok, nothing more."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                health = json.load(r)
        except urllib.error.HTTPError as unavailable:  # 503 while a dependency is down
            health = json.load(unavailable)
        except OSError:
            return False
        checks: dict[str, dict[str, bool]] = health.get("checks", {})
        return checks.get("broker", {}).get("ok") is True

    try:
        deadline = time.monotonic() + 30
        while not broker_ok() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert broker_ok()
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=20)
    assert serve.returncode == 0, output
    assert (tmp_path / "rules.snapshot").exists()  # the last snapshot, written on the way out


def test_serve_refuses_bad_configuration_in_one_line() -> None:
    env = {**os.environ, "CITYSENSE_CENTER_PORT": "eighty", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "citysense.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "citysense serve: error: bad configuration: CITYSENSE_CENTER_PORT: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
    assert "Traceback" not in result.stdout + result.stderr
