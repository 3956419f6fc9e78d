"""The config topic's messages: a station's desired config and its answer on ``ack``."""

from __future__ import annotations

import json

import pytest

from protocol import (
    Channel,
    CommandAck,
    ConfigAck,
    PayloadError,
    StationConfig,
    StationTopic,
    decode_any_ack,
    decode_config,
    encode,
)
from tests.factories import T0

CONFIG = StationTopic("st-1", Channel.CONFIG)
ACK = StationTopic("st-1", Channel.ACK)
GOOD: dict[str, object] = {
    "v": 1,
    "station_id": "st-1",
    "config_version": 7,
    "sample_interval_s": 0.5,
    "batch_interval_s": 2,
    "report": {
        "enabled": True,
        "kinds": {"cover": {"heartbeat_s": 60, "deadband": {"tilt_deg": 2}}},
    },
    "thresholds": {"cover-open": {"tilt_deg": 12.5}, "pole-tilt": {"tilt_deg.above": 4}},
}


def test_the_config_topic_is_a_station_topic() -> None:
    assert str(CONFIG) == "citysense/v1/stations/st-1/config"
    assert StationTopic.parse(str(CONFIG)) == CONFIG


def test_a_config_round_trips() -> None:
    config = decode_config(CONFIG, json.dumps(GOOD).encode())
    assert config.config_version == 7
    assert config.thresholds["pole-tilt"] == {"tilt_deg.above": 4.0}
    assert config.report is not None
    assert config.report.kinds
    assert decode_config(CONFIG, encode(config)) == config


def test_a_config_ack_and_a_command_ack_share_the_ack_topic() -> None:
    applied = ConfigAck(
        station_id="st-1", status="rejected", config_version=3, offered_version=4,
        reason="unknown rule x", sent_at=T0,
    )  # fmt: skip
    assert decode_any_ack(ACK, encode(applied)) == applied
    answer = CommandAck(
        station_id="st-1", request_id=1, command="resend", resent=1, pending=0, expired=0,
        unknown=0, sent_at=T0,
    )  # fmt: skip
    assert decode_any_ack(ACK, encode(answer)) == answer


@pytest.mark.parametrize(
    ("change", "reason", "where"),
    [
        ({"sample_interval_s": -1}, "invalid", "sample_interval_s"),
        ({"sample_interval_s": 0}, "invalid", "sample_interval_s"),
        ({"batch_interval_s": "1"}, "invalid", "batch_interval_s"),
        ({"config_version": 0}, "invalid", "config_version"),
        ({"config_version": "8"}, "invalid", "config_version"),
        ({"config_version": 8.5}, "invalid", "config_version"),
        ({"config_version": None}, "invalid", "config_version"),
        ({"v": 2}, "bad_version", "v"),
        ({"station_id": "st-2"}, "station_mismatch", "st-2"),
        ({"thresholds": {"Cover Open": {"tilt_deg": 1}}}, "invalid", "thresholds"),
        ({"thresholds": {"cover-open": {"tilt_deg.between": 1}}}, "invalid", "thresholds"),
        ({"thresholds": {"cover-open": {"tilt_deg": "12"}}}, "invalid", "thresholds"),
        ({"report": {"kinds": {"pole": {"deadband": {"gas_ppm": 1}}}}}, "unknown_value", "gas"),
        ({"report": {"kinds": {"pole": {"deadband": {"tilt_deg": -1}}}}}, "invalid", "deadband"),
        ({"report": {"kinds": {"pole": {"heartbeat_s": 0}}}}, "invalid", "heartbeat"),
        ({"colour": "red"}, "invalid", "colour"),
    ],
)
def test_a_malformed_config_is_refused_with_a_reason(
    change: dict[str, object], reason: str, where: str
) -> None:
    payload = json.dumps({**GOOD, **change}).encode()
    with pytest.raises(PayloadError) as refused:
        decode_config(CONFIG, payload)
    assert refused.value.reason == reason
    assert where in str(refused.value)


def test_a_config_without_its_schema_version_is_refused() -> None:
    without = {key: value for key, value in GOOD.items() if key != "v"}
    with pytest.raises(PayloadError, match="bad_version"):
        decode_config(CONFIG, json.dumps(without).encode())


def test_a_config_may_leave_everything_local() -> None:
    config = StationConfig(station_id="st-1", config_version=1)
    assert config.sample_interval_s is None
    assert config.report is None
    assert not config.thresholds


def test_the_example_config_of_the_edge_guide_is_valid() -> None:
    import re
    import tomllib
    from pathlib import Path

    from edge.exception import ReportSettings
    from edge.remote_config import RunSettings, resolve
    from rules import load_rules

    guide = (Path(__file__).parents[2] / "docs" / "edge.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(# st-0001.toml.*?)```", guide, re.DOTALL)
    assert example is not None
    document = tomllib.loads(example[1])
    config = StationConfig.model_validate({**document, "station_id": "st-1", "config_version": 4})
    rules = load_rules()
    run = resolve(RunSettings(1.0, 1.0, ReportSettings(enabled=False), rules), config)
    assert run.sample_interval == 5.0
    assert run.rules.rule("cover-open").watched()[0].above == 12.0
