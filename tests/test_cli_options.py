"""Options that reach every command: `--version`, and `serve --rules/--mqtt-host/--host`."""

from __future__ import annotations

import uuid
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from citysense.broker import MosquittoBroker
from citysense.cli import app
from tests.serve_process import NumberedEdge, api, serve, serve_env, wait_for

QUICK = (Path(__file__).parent / "data" / "quick_rules.yaml").read_text(encoding="utf-8")


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"citysense {version('citysense')}"


def test_serve_and_demo_refuse_a_rules_file_they_cannot_use(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [{id: x, kind: cover}]", encoding="utf-8")
    for command in ("serve", "demo"):
        for path, words in ((broken, "broken.yaml"), (tmp_path / "missing.yaml", "does not exist")):
            result = CliRunner().invoke(
                app, [command, "--rules", str(path)], env={"COLUMNS": "300"}
            )
            assert result.exit_code == 2, result.stdout
            assert words in result.stderr
            assert "Traceback" not in result.stdout + result.stderr


def test_serve_runs_the_rules_given_with_the_option_over_the_environment(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(QUICK.replace("id: cover-open", "id: my-cover-rule"), encoding="utf-8")
    env = serve_env(mosquitto, tmp_path)  # its CITYSENSE_INGEST_RULES_PATH: the quick rules
    del env["CITYSENSE_INGEST_MQTT_PORT"]
    args = ("--rules", str(mine), "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mosquitto.port))
    station = f"st-opt-{uuid.uuid4().hex[:6]}"
    edge = NumberedEdge(mosquitto, station, covers=1, realtime=True)
    try:
        with serve(env, *args):
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")

            def opened() -> list[dict[str, object]]:
                edge.publish(60.0)
                edge.flush()
                items = api(env, f"/api/v1/cases?station_id={station}")["items"]
                return [c for c in items if c["station_id"] == station]

            cases = wait_for(opened, 30, "a case from the option's rules")
            assert {c["rule_id"] for c in cases} == {"my-cover-rule"}
    finally:
        edge.close()
