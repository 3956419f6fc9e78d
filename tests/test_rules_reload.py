"""A rule set changed through the API while a station streams: nothing lost, the pending hold
kept (the case starts when the incident did), the new thresholds in force afterwards, and still
after the node is killed (kill -9) and started again."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from citysense.broker import MosquittoBroker
from tests.serve_process import (
    NumberedEdge,
    api,
    auth_header,
    metric,
    serve,
    serve_env,
    wait_for,
)

QUICK = (Path(__file__).parent / "data" / "quick_rules.yaml").read_text(encoding="utf-8")


def put_rules(env: dict[str, str], text: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}/api/v1/rules"
    body = json.dumps({"yaml": text, "author": "test"}).encode()
    headers = {"Content-Type": "application/json", **auth_header(env)}
    request = urllib.request.Request(url, body, headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_rules_changed_mid_stream_lose_nothing_and_keep_the_pending_hold(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(QUICK, encoding="utf-8")  # cover-open: above 15 for 3 s
    env = serve_env(mosquitto, tmp_path, CITYSENSE_INGEST_RULES_PATH=str(rules))
    station = f"st-rl-{uuid.uuid4().hex[:6]}"
    edge = NumberedEdge(mosquitto, station, covers=3, realtime=True)
    try:
        with serve(env) as node:
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")

            def stream(seconds: float, tilt: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    edge.publish(tilt)
                    time.sleep(0.01)
                edge.flush()

            stream(1.0, 1.0)
            incident_start = datetime.now().astimezone()
            stream(1.5, 60.0)  # pending: half the hold
            status, answer = put_rules(env, QUICK.replace("above: 15", "above: 50"))
            assert status == 200, answer
            assert answer["version"] == 2
            status, refused = put_rules(env, "rules: [{id: x}]")
            assert status == 422
            assert refused["reasons"]
            stream(3.0, 60.0)  # still above the new threshold: the hold completes
            stream(1.0, 30.0)  # above the old threshold only: no second case
            stream(1.0, 1.0)
            published = edge.seq
            wait_for(
                lambda: metric(env, "citysense_ingest_batches_total") >= published, 30, "all in"
            )
            assert metric(env, "citysense_ingest_batches_total") == published  # none lost
            assert metric(env, "citysense_rules_version") == 2
            assert metric(env, "citysense_rules_reloads_total", outcome="refused") == 1
            items = api(env, "/api/v1/cases?limit=500")["items"]
            mine = [c for c in items if c["station_id"] == station]
            assert len(mine) == 1, mine
            started = datetime.fromisoformat(mine[0]["started_at"])
            assert abs((started - incident_start).total_seconds()) < 0.5  # from before the PUT
            history = api(env, "/api/v1/rules")["history"]
            assert [v["version"] for v in history] == [1, 2]
            assert "above: 50" in rules.read_text(encoding="utf-8")  # the next start runs it
            node.send_signal(signal.SIGKILL)
            node.wait(timeout=10)
        with serve(env):  # after a kill -9: the new version runs, and its history is kept
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "restart")
            running = api(env, "/api/v1/rules")
            assert running["version"] == 2
            assert "above: 50" in running["yaml"]
            assert [v["source"] for v in running["history"]] == ["start", "api"]
    finally:
        edge.close()
