"""A scoped run: `citysense replay --run-id` renames the run's stations and sensors, and
`citysense score --run-id` scores only them, so a demo or an earlier run cannot pollute it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest
from typer.testing import CliRunner

from citysense.backtest import backtest
from citysense.broker import MosquittoBroker
from citysense.cli import app
from protocol import (
    Channel,
    Reading,
    SensorKind,
    StationState,
    StationTopic,
    TelemetryBatch,
    encode,
)
from recording.format import (
    Record,
    RecordingReader,
    RecordingWriter,
    ns_from_datetime,
    summarize,
)
from recording.replay import replay
from recording.runs import RunPrefix, RunRecord, RunScopeError, recorded_stations
from rules import DEFAULT_RULES_FILE, load_rules
from simulator.city import build_city
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from simulator.score import ScoredCase, score, split_by_arrival
from simulator.truth import read_truth
from tests.factories import cover_info
from tests.serve_process import NumberedEdge, api, metric, serve, serve_env, wait_for

LIBRARY = Path(__file__).parents[1] / "scenarios"
T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout + result.stderr


def _citysense(*args: str | Path | int) -> tuple[int, str]:
    """The CLI as its own process (``replay`` sets up logging, which outlives a CliRunner)."""
    done = subprocess.run(
        [sys.executable, "-m", "citysense.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def _renamed_copy(recording: Path, prefix: RunPrefix, out: Path) -> Path:
    with RecordingReader(recording) as reader, RecordingWriter(out, reader.metadata) as writer:
        for record in reader:
            renamed = prefix.record(record)
            if renamed is not None:
                writer.write(renamed)
    return out


# -- the renaming -----------------------------------------------------------------------------


def test_a_run_prefix_renames_everything_that_names_a_station() -> None:
    prefix = RunPrefix("lab1")
    birth = StationState(
        station_id="st-1", status="online", boot_epoch=3, ts=T0, sensors=[cover_info()]
    )
    topic = str(StationTopic("st-1", Channel.STATE))
    renamed = prefix.record(Record(5, topic, encode(birth), qos=1, retain=True))
    assert renamed is not None
    assert (renamed.t_ns, renamed.qos, renamed.retain) == (5, 1, True)
    assert renamed.topic == "citysense/v1/stations/lab1-st-1/state"
    state = StationState.model_validate_json(renamed.payload)
    assert state == birth.model_copy(
        update={
            "station_id": "lab1-st-1",
            "sensors": [cover_info().model_copy(update={"sensor_id": "lab1-st-1.cover-01"})],
        }
    )
    batch = TelemetryBatch(
        station_id="st-1",
        boot_epoch=3,
        seq=9,
        sent_at=T0,
        readings=[
            Reading(sensor_id="st-1.cover-01", kind=SensorKind.COVER, ts=T0, values={"tilt_deg": 1})
        ],
    )
    payload = prefix.payload(encode(batch))
    decoded = TelemetryBatch.model_validate_json(payload)
    assert decoded.station_id == "lab1-st-1"
    assert [r.sensor_id for r in decoded.readings] == ["lab1-st-1.cover-01"]
    assert decoded.model_dump(exclude={"station_id", "readings"}) == batch.model_dump(
        exclude={"station_id", "readings"}
    )
    # junk goes out byte for byte; a topic outside the stations is not the run's
    for junk in (b"", b"\x00\xff", b'{"v": 1, "readings": "none"}', b"[1, 2]", b"\xef\xbb\xbfnull"):
        assert prefix.payload(junk) == junk
    assert prefix.topic("citysense/v1/ingest/state") is None
    assert prefix.topic("citysense/v1/stations/st-1/nonsense") == (
        "citysense/v1/stations/lab1-st-1/nonsense"
    )


def test_a_run_id_must_keep_every_id_inside_the_protocol() -> None:
    for bad in ("", "-x", "a b", "x/y", "é", "a" * 25):
        with pytest.raises(RunScopeError):
            RunPrefix(bad)
    prefix = RunPrefix("a" * 24)
    assert prefix.station("s" * 39) == "a" * 24 + "-" + "s" * 39  # 64 characters: fine
    with pytest.raises(RunScopeError, match="too long"):
        prefix.station("s" * 40)
    with pytest.raises(RunScopeError, match="too long"):
        prefix.sensor("s" * 104)
    assert prefix.station("bad id") == "a" * 24 + "-bad id"  # invalid before: refused as before


def test_a_renamed_recording_backtests_to_the_same_cases_under_the_runs_ids(
    tmp_path: Path,
) -> None:
    """Renaming is invisible to ingest and the rules: junk is refused for the same reasons,
    duplicates dropped, late batches evaluated, the same cases open and clear."""
    rules = load_rules(DEFAULT_RULES_FILE)
    prefix = RunPrefix("lab1")
    for name in ("garbage", "duplicates", "station-offline"):
        run = run_scenario(load_scenario(LIBRARY / f"{name}.yaml"), tmp_path)
        renamed = _renamed_copy(run.recording, prefix, tmp_path / f"{name}.lab1.csrec")
        original, scoped = (asyncio.run(backtest(p, rules)) for p in (run.recording, renamed))

        def key(case: Any, rename: bool) -> tuple[object, ...]:
            sensor, station = prefix.sensor, prefix.station
            return (
                case.rule_id,
                sensor(case.sensor_id) if rename else case.sensor_id,
                station(case.station_id) if rename else case.station_id,
                case.started_at,
                case.status,
                case.cleared_at,
                tuple(sensor(m) if rename else m for m in case.members),
            )

        assert sorted(key(c, True) for c in original.cases) == sorted(
            key(c, False) for c in scoped.cases
        ), name
        assert original.cases, name
        assert original.engine.counters() == scoped.engine.counters(), name
        samples = [
            sorted(
                (s.labels["reason"], s.value)
                for m in r.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )
            for r in (original.metrics.rejected, scoped.metrics.rejected)
        ]
        assert samples[0] == samples[1], name
        truth = read_truth(run.truth_path)
        renamed_truth = truth.renamed(prefix.station, prefix.sensor)
        scored = score(renamed_truth, map(ScoredCase.from_api, scoped.cases), rules)
        assert (scored.recall, scored.false_alarms) == (1.0, 0), name


def test_the_truth_renamed_names_the_runs_ids(tmp_path: Path) -> None:
    truth = read_truth(_truth_of("station-offline", tmp_path))
    prefix = RunPrefix("r2")
    renamed = truth.renamed(prefix.station, prefix.sensor)
    assert truth.named_stations == {"st-410105-001"}
    assert renamed.named_stations == {"r2-st-410105-001"}
    assert [i.sensors for i in renamed.incidents] == [
        tuple(f"r2-{s}" for s in i.sensors) for i in truth.incidents
    ]
    assert renamed.faults[0].station_id == "r2-st-410105-001"
    assert (renamed.sensors, renamed.start, renamed.scenario) == (
        truth.sensors,
        truth.start,
        truth.scenario,
    )


def _truth_of(name: str, out: Path) -> Path:
    return run_scenario(load_scenario(LIBRARY / f"{name}.yaml"), out).truth_path


def test_cases_that_arrived_before_the_run_started_are_left_out() -> None:
    case = ScoredCase("s.c", "cover-open", "component", "0103", T0, T0, T0)
    started = T0 + timedelta(seconds=1)
    later = replace(case, detected_at=started)
    unknown = replace(case, detected_at=None)
    arrived, earlier = split_by_arrival([case, later, unknown], started)
    assert (arrived, earlier) == ([later, unknown], [case])


def test_score_refuses_a_run_it_cannot_scope(tmp_path: Path) -> None:
    truth = _truth_of("cover-open", tmp_path)
    code, out = _cli("score", truth, "--run-id", "nope")
    assert code == 2
    assert "no run record" in out
    assert "replay the recording with --run-id nope" in out
    record = RunRecord(
        run_id="r1",
        recording=str(tmp_path / "other.csrec"),
        metadata={"scenario": "other", "seed": 1},
        broker="127.0.0.1:1",
        speed=None,
        started_at=T0,
        stations={"st-410105-001": "r1-st-410105-001"},
    )
    record.write(tmp_path / "cover-open.r1.run.json")
    code, out = _cli("score", truth, "--run-id", "r1")
    assert code == 2
    assert "the truth file is for scenario 'cover-open' seed 7" in out
    record = replace(record, metadata={"scenario": "cover-open", "seed": 7})
    record.write(tmp_path / "cover-open.r1.run.json")
    code, out = _cli("score", truth, "--run-id", "r1")
    assert code == 2
    assert "names station st-410105-002, which run r1 did not replay" in out
    code, out = _cli(
        "score", truth, "--run-file", tmp_path / "cover-open.r1.run.json", "--run-id", "r9"
    )
    assert code == 2
    assert "the record of run r1, not r9" in out
    assert RunRecord.read(tmp_path / "cover-open.r1.run.json") == record


def test_replay_refuses_a_run_it_cannot_make(tmp_path: Path) -> None:
    run = run_scenario(load_scenario(LIBRARY / "replay-check.yaml"), tmp_path)
    assert recorded_stations(["citysense/v1/stations/a/state", "x/y"]) == ["a"]
    code, out = _cli("replay", run.recording, "--run-id", "bad id", "--mqtt-port", "1")
    assert code == 2
    assert "run id 'bad id' is not" in out
    code, out = _cli("replay", run.recording, "--run-file", tmp_path / "x")
    assert code == 2
    assert "--run-file goes with --run-id" in out
    code, out = _cli("replay", run.recording, "--run-id", "a" * 24, "--mqtt-port", "1")
    assert code == 2
    assert "cannot check the broker at 127.0.0.1:1" in out
    assert not list(tmp_path.glob("*.run.json"))  # nothing was published: no run to record


def test_a_runs_alert_does_not_join_a_demo_incident_months_away(tmp_path: Path) -> None:
    """The demo's city (seed 7) and cover-open (seed 7) put their covers at the same places;
    renaming keeps the ids apart, but the rules group by place."""
    run = run_scenario(load_scenario(LIBRARY / "cover-open.yaml"), tmp_path)
    station = next(s for s in build_city(seed=7).stations if s.station_id == "st-410105-001")
    now = datetime(2026, 11, 30, 1, tzinfo=UTC)
    mixed = tmp_path / "demo-and-run.csrec"
    with RecordingWriter(mixed) as writer:
        birth = StationState(
            station_id=station.station_id,
            status="online",
            boot_epoch=1,
            ts=now,
            sensors=list(station.sensors),
        )
        topic = str(StationTopic(station.station_id, Channel.STATE))
        writer.write(Record(ns_from_datetime(now), topic, encode(birth), 1, True))
        for seq in range(40):  # the demo's cover-01 open for 40 s: its case is open
            ts = now + timedelta(seconds=seq)
            reading = Reading(
                sensor_id=f"{station.station_id}.cover-01",
                kind=SensorKind.COVER,
                ts=ts,
                values={"tilt_deg": 60.0},
            )
            batch = TelemetryBatch(
                station_id=station.station_id, boot_epoch=1, seq=seq, sent_at=ts, readings=[reading]
            )
            topic = str(StationTopic(station.station_id, Channel.TELEMETRY))
            writer.write(Record(ns_from_datetime(ts), topic, encode(batch)))
        prefix = RunPrefix("lab1")
        with RecordingReader(run.recording) as reader:
            for record in reader:
                renamed = prefix.record(record)
                assert renamed is not None
                writer.write(renamed)
    result = asyncio.run(backtest(mixed, load_rules(DEFAULT_RULES_FILE)))
    run_cases = {c.sensor_id for c in result.cases if c.station_id.startswith("lab1-")}
    truth = read_truth(run.truth_path).renamed(prefix.station, prefix.sensor)
    assert run_cases == {i.sensor_id for i in truth.incidents}


# -- live: a node, a demo-like station and an earlier run beside the scoped run -----------------


def _score(truth: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    api = f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}"
    token = env["CITYSENSE_TOKEN"]
    code, out = _cli("score", truth, "--api", api, "--token", token, "--json", *args)
    assert code == 0, out
    document: dict[str, Any] = json.loads(out)
    return document


def _opens_a_demo_case(broker: MosquittoBroker, station_id: str, batches: int) -> NumberedEdge:
    """A station of the demo's ids whose first cover stands open: a case of its own."""
    edge = NumberedEdge(broker, station_id)
    for _ in range(batches):
        edge.publish(tilt=75.0)
    edge.close()
    return edge


@pytest.mark.integration
def test_a_scoped_live_score_is_unaffected_by_a_running_demo(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """`make demo` runs the stations st-410105-00x too. An earlier unscoped replay of the same
    scenario, and a demo-like station of the same id opening a case while the run replays,
    leave the run's score (--run-id) as the backtest's: every incident, no false alarm."""
    run = run_scenario(load_scenario(LIBRARY / "rush-hour-covers.yaml"), tmp_path / "runs")
    rules = load_rules(DEFAULT_RULES_FILE)
    expected = score(
        run.truth,
        map(ScoredCase.from_api, asyncio.run(backtest(run.recording, rules)).cases),
        rules,
    )
    assert (expected.recall, expected.false_alarms, expected.cases) == (1.0, 0, 3)
    telemetry = run.truth.messages["telemetry"]
    demo_batches = 3000  # 30 s of event time: the cover-open rule's 20 s hold, then the lateness
    data = tmp_path / "node"
    data.mkdir()
    env = serve_env(
        mosquitto,
        data,
        CITYSENSE_INGEST_RULES_PATH=str(DEFAULT_RULES_FILE),
        CITYSENSE_INGEST_ALLOWED_LATENESS_S="6",
    )
    stations = recorded_stations(summarize(run.recording).topics)
    try:
        with serve(env):
            wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve")
            # an earlier run, unscoped: its cases sit on the scenario's own station ids
            asyncio.run(replay(run.recording, host=mosquitto.host, port=mosquitto.port, speed=None))
            wait_for(
                lambda: metric(env, "citysense_ingest_batches_total") >= telemetry,
                30,
                "the earlier run consumed",
            )
            # the demo's station st-410105-001 opens a case while the scoped run replays
            demo = threading.Thread(
                target=_opens_a_demo_case, args=(mosquitto, "st-410105-001", demo_batches)
            )
            demo.start()
            code, out = _citysense(
                "replay",
                run.recording,
                "--mqtt-port",
                mosquitto.port,
                "--speed",
                "1000",
                "--run-id",
                "t1",
            )
            demo.join(60)
            assert code == 0, out
            assert "run t1: 6 stations renamed (st-410104-001 -> t1-st-410104-001" in out
            wait_for(
                lambda: (
                    metric(env, "citysense_ingest_batches_total") >= 2 * telemetry + demo_batches
                ),
                30,
                "the run and the demo consumed",
            )
            record = RunRecord.read(run.recording.with_name("rush-hour-covers.t1.run.json"))
            assert record.finished_at is not None
            assert (record.published, record.skipped) == (telemetry + 6, 0)
            assert record.stations == {s: f"t1-{s}" for s in stations}

            def scored_like_the_backtest() -> dict[str, Any] | None:
                document = _score(run.truth_path, env, "--run-id", "t1")
                return document if document["cases"] >= expected.cases else None

            scoped = wait_for(scored_like_the_backtest, 20, "the run's cases")
            unscoped = _score(run.truth_path, env)
            # the same run id again: refused, by its record and (elsewhere) by the broker
            code, out = _citysense(
                "replay", run.recording, "--mqtt-port", mosquitto.port, "--run-id", "t1"
            )
            assert code == 2
            assert "run t1 was replayed before" in out
            code, out = _citysense(
                "replay",
                run.recording,
                "--mqtt-port",
                mosquitto.port,
                "--run-id",
                "t1",
                "--run-file",
                tmp_path / "elsewhere.run.json",
            )
            assert code == 2
            assert "run id t1 was replayed into this broker before" in out
            assert not (tmp_path / "elsewhere.run.json").exists()
    finally:
        for station in stations:  # the shared broker keeps no births of this test's stations
            for name in (station, f"t1-{station}"):
                publish.single(
                    str(StationTopic(name, Channel.STATE)),
                    b"",
                    qos=1,
                    retain=True,
                    hostname=mosquitto.host,
                    port=mosquitto.port,
                )
    kinds = {k["kind"]: k for k in scoped["kinds"]}
    assert kinds["cover_open"]["recall"] == expected.recall, scoped
    assert (scoped["cases"], scoped["false_alarms"], scoped["false_cases"]) == (3, 0, []), scoped
    assert kinds["cover_open"]["duplicates"] == 0
    assert scoped["run"] == {
        "run_id": "t1",
        "stations": 6,
        "started_at": record.started_at.isoformat().replace("+00:00", "Z"),
        "finished": True,
        "earlier_cases": 0,
    }
    # unscoped, the same center shows the pollution the scope keeps out: the earlier run's
    # cases count as this run's, the run's own are foreign to the truth's ids, the demo's case
    # is a false alarm (and two sources on one station id can make more: a cover's last rocking
    # reading of the earlier run stands until the demo's next one, months later in event time)
    false_cases = json.dumps(unscoped["false_cases"], indent=0)
    assert unscoped["cases"] >= 3 + 3 + 1, false_cases
    assert unscoped["false_alarms"] >= 3 + 1, false_cases
