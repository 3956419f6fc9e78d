"""`citysense edge` settings (flags over env over file over defaults, one-line errors) and the
whole command against a private Mosquitto with the UDP driver."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from citysense.broker import MosquittoBroker
from edge.config import EdgeConfigError, load_edge_settings
from edge.settings import EdgeSettings
from protocol import SensorKind
from tests.edge.watch import StationWatcher, watch_station

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "edge.example.toml"


def sensor_toml(sensor_id: str, kind: str = "cover", class_code: str = "0103") -> str:
    return f"""
[[sensors]]
sensor_id = "{sensor_id}"
kind = "{kind}"
class_code = "{class_code}"
component_id = "410105{class_code}000123"
grid_code = "41010500100201"
lon = 113.68
lat = 34.78
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CITYSENSE_EDGE_"):
            monkeypatch.delenv(name)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_override_the_environment_which_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "edge.toml",
        'station_id = "st-file"\nmqtt_host = "10.0.0.1"\nmqtt_port = 1884\n'
        'sample_interval_s = 5.0\ndriver = "udp"\n'
        '[udp]\nhost = "127.0.0.2"\nport = 1000\n'
        "[report.kinds.pole]\nheartbeat_s = 20\n" + sensor_toml("st-file.c1"),
    )
    from_file = load_edge_settings(config)
    assert (from_file.station_id, from_file.mqtt_host, from_file.mqtt_port) == (
        "st-file",
        "10.0.0.1",
        1884,
    )
    assert (from_file.udp.host, from_file.udp.port) == ("127.0.0.2", 1000)
    assert from_file.report.policy(SensorKind.POLE).heartbeat_s == 20
    assert [s.sensor_id for s in from_file.sensors] == ["st-file.c1"]
    assert from_file.batch_interval_s == 1.0  # the default, as nobody set it

    monkeypatch.setenv("CITYSENSE_EDGE_MQTT_PORT", "1885")
    monkeypatch.setenv("CITYSENSE_EDGE_SAMPLE_INTERVAL_S", "2.5")
    monkeypatch.setenv("CITYSENSE_EDGE_UDP__PORT", "2000")  # merges into the file's [udp]
    env_over_file = load_edge_settings(config)
    assert (env_over_file.mqtt_host, env_over_file.mqtt_port) == ("10.0.0.1", 1885)
    assert env_over_file.sample_interval_s == 2.5
    assert (env_over_file.udp.host, env_over_file.udp.port) == ("127.0.0.2", 2000)

    flags = {"mqtt_port": 1886, "mqtt_host": None, "sample_interval_s": 0.5}
    flags_over_env = load_edge_settings(config, flags)
    assert (flags_over_env.mqtt_host, flags_over_env.mqtt_port) == ("10.0.0.1", 1886)
    assert flags_over_env.sample_interval_s == 0.5
    assert flags_over_env.udp.port == 2000


def test_without_a_file_the_environment_and_defaults_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_EDGE_STATION_ID", "st-410105-001")
    settings = load_edge_settings()
    assert (settings.station_id, settings.driver, settings.seed) == (
        "st-410105-001",
        "simulated",
        7,
    )
    assert settings.udp.host == "127.0.0.1"
    assert settings.report.enabled


def test_the_shipped_example_config_loads() -> None:
    settings = load_edge_settings(EXAMPLE)
    assert settings.driver == "udp"
    assert [s.kind for s in settings.sensors] == [
        SensorKind.COVER,
        SensorKind.PRESSURE,
        SensorKind.POLE,
    ]
    cover = settings.report.policy(SensorKind.COVER)
    assert (cover.heartbeat_s, cover.alarm_above["tilt_deg"]) == (600, 5.0)


def test_the_shipped_unit_restarts_keeps_state_and_reads_known_settings() -> None:
    unit = (ROOT / "deploy" / "citysense-edge.service").read_text(encoding="utf-8")
    lines = set(unit.splitlines())
    for line in (
        "Restart=always",
        "StartLimitIntervalSec=0",
        "StateDirectory=citysense-edge",
        "WorkingDirectory=%S/citysense-edge",
        "EnvironmentFile=-/etc/citysense/edge.env",
        "Environment=CITYSENSE_EDGE_CONFIG=/etc/citysense/edge.toml",
        "ExecStart=/opt/citysense/.venv/bin/citysense edge",
    ):
        assert line in lines, line
    example_env = (ROOT / "deploy" / "edge.example.env").read_text(encoding="utf-8")
    settings = [line for line in example_env.splitlines() if line and not line.startswith("#")]
    names = [line.split("=", 1)[0] for line in settings]
    fields = {f"CITYSENSE_EDGE_{name.upper()}" for name in EdgeSettings.model_fields}
    assert names
    assert set(names) <= fields | {"CITYSENSE_EDGE_CONFIG"}


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('station_id = "st-1\n', {}, r"edge\.toml: not valid TOML: .*line 1"),
        ('staton_id = "st-1"\n', {}, r"edge\.toml: unknown setting staton_id$"),
        (
            'station_id = "st-1"\n[udp]\nport = 99999\n',
            {},
            r"edge\.toml: udp\.port: Input should be less than or equal to 65535$",
        ),
        (
            'station_id = "st-1"\nmqtt_port = 1\n',
            {"CITYSENSE_EDGE_MQTT_PORT": "many"},
            r"^environment CITYSENSE_EDGE_MQTT_PORT: mqtt_port: Input should be a valid integer",
        ),
        (
            'station_id = "st-1"\ndriver = "udp"\n',
            {},
            r"the udp driver needs the station's sensors",
        ),
        (
            'station_id = "st-1"\n' + sensor_toml("st-2.c1"),
            {},
            r"sensor ids must start with 'st-1\.': st-2\.c1",
        ),
        (
            'station_id = "st-1"\n' + sensor_toml("st-1.c1", class_code="9999"),
            {},
            r"edge\.toml: sensors\.0\.class_code: String should match pattern",
        ),
        (
            'station_id = "st-1"\n[report.kinds.cover]\ndeadband = { pressure_mpa = 0.1 }\n',
            {},
            r"edge\.toml: report: Value error, a cover reading has no value pressure_mpa",
        ),
        ("mqtt_host = 'x'\n", {}, r"station_id: Field required \(give STATION"),
    ],
)
def test_a_bad_setting_is_one_line_naming_where_it_came_from(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(EdgeConfigError) as raised:
        load_edge_settings(write(tmp_path / "edge.toml", text))
    message = str(raised.value)
    assert "\n" not in message
    assert re.search(expected, message), message


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(EdgeConfigError, match=r"nowhere\.toml: no such config file$"):
        load_edge_settings(tmp_path / "nowhere.toml")
    latin = tmp_path / "edge.toml"
    latin.write_bytes(b'station_id = "st-\xff"')
    with pytest.raises(EdgeConfigError, match=r"edge\.toml: not UTF-8 text"):
        load_edge_settings(latin)
    with pytest.raises(EdgeConfigError, match="cannot read"):
        load_edge_settings(tmp_path)  # a directory


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "citysense.cli", "edge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_the_command_refuses_a_bad_file_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    config = write(tmp_path / "edge.toml", 'station_id = "st-1"\n[udp]\nport = -1\n')
    result = run_cli(env={"CITYSENSE_EDGE_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"citysense edge: error: bad configuration: {config}: udp.port: "
        "Input should be greater than or equal to 0"
    ]
    assert result.stdout == ""


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture
def station_id() -> str:
    return f"st-e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        yield sock


def datagram(*readings: dict[str, object]) -> bytes:
    return json.dumps(list(readings)).encode()


@pytest.mark.integration
async def test_udp_datagrams_reach_the_broker_as_a_telemetry_batch(
    mosquitto: MosquittoBroker, tmp_path: Path, station_id: str, sender: socket.socket
) -> None:
    cover, main = f"{station_id}.cover-01", f"{station_id}.main-01"
    config = write(
        tmp_path / "edge.toml",
        f'station_id = "{station_id}"\nmqtt_port = 1\ndriver = "udp"\n'
        "sample_interval_s = 0.1\nbatch_interval_s = 0.1\n[udp]\nport = 0\n"
        + sensor_toml(cover)
        + sensor_toml(main, "pressure", "0101"),
    )
    async with watch_station(mosquitto.host, mosquitto.port, station_id) as watcher:
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "citysense.cli",
            "edge",
            "--config",
            str(config),
            "--mqtt-port",  # the flag beats the file's port 1
            str(mosquitto.port),
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert agent.stderr is not None
            started = (await asyncio.wait_for(agent.stderr.readline(), 15)).decode()
            found = re.search(r"UDP feed on 127\.0\.0\.1:(\d+)", started)
            assert found, started
            feed = ("127.0.0.1", int(found.group(1)))
            await watcher.until(lambda w: is_online(w), within_s=10)
            birth = watcher.states[-1][0]
            assert [(s.sensor_id, s.kind) for s in birth.sensors] == [
                (cover, SensorKind.COVER),
                (main, SensorKind.PRESSURE),
            ]

            ts = "2026-07-01T08:00:00Z"
            sender.sendto(b"not json at all", feed)
            sender.sendto(datagram({"sensor_id": f"{station_id}.nobody", "values": {}}), feed)
            sender.sendto(
                datagram(
                    {"sensor_id": cover, "ts": ts, "values": {"tilt_deg": 1.5}},
                    {"sensor_id": main, "ts": ts, "values": {"pressure_mpa": 0.31}},
                ),
                feed,
            )
            await watcher.until(lambda w: len(w.readings) >= 2, within_s=10)
            # Report-by-exception runs in front of the agent: a step inside the deadband is
            # suppressed, a cover past its alarm angle goes.
            sender.sendto(
                datagram({"sensor_id": cover, "ts": ts, "values": {"tilt_deg": 1.6}}), feed
            )
            sender.sendto(
                datagram({"sensor_id": cover, "ts": ts, "values": {"tilt_deg": 30.0}}), feed
            )
            await watcher.until(lambda w: len(w.readings) >= 3, within_s=10)

            seen = [(r.sensor_id, r.values) for r in watcher.readings]
            assert seen == [
                (cover, {"tilt_deg": 1.5}),
                (main, {"pressure_mpa": 0.31}),
                (cover, {"tilt_deg": 30.0}),
            ]
            assert {batch.station_id for batch in watcher.batches} == {station_id}

            agent.send_signal(signal.SIGTERM)  # what systemd sends on stop
            await watcher.until(lambda w: w.states[-1][0].status == "offline", within_s=10)
            assert await asyncio.wait_for(agent.wait(), 10) == 0
            summary = (await agent.stderr.read()).decode()
            assert "refused: not_json 1, unknown_sensor 1" in summary, summary
            assert "suppressed 1" in summary, summary
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()


def is_online(watcher: StationWatcher) -> bool:
    return bool(watcher.states) and watcher.states[-1][0].status == "online"
