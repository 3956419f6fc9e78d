import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from protocol import (
    REJECT_REASONS,
    Channel,
    PayloadError,
    Reading,
    SensorKind,
    StationTopic,
    decode_state,
    decode_telemetry,
    encode,
)
from protocol.models import SEQ_MAX
from tests.factories import T0, batch, birth, cover_info, tilt

TOPIC = StationTopic("st-1", Channel.TELEMETRY)
STATE = StationTopic("st-1", Channel.STATE)
Document = dict[str, Any]


def test_telemetry_round_trip() -> None:
    sent = batch([tilt(0, 1.0), tilt(1, 2.0)], seq=SEQ_MAX)
    assert decode_telemetry(TOPIC, encode(sent)) == sent


def test_state_round_trip() -> None:
    sent = birth()
    assert decode_state(STATE, encode(sent)) == sent


def _document() -> Document:
    document: Document = json.loads(encode(batch([tilt(0, 1.0)])))
    return document


def _reading(**changes: Any) -> Callable[[Document], Document]:
    def mutate(document: Document) -> Document:
        return {**document, "readings": [{**document["readings"][0], **changes}]}

    return mutate


def _values(values: dict[str, Any], kind: str = "cover") -> Callable[[Document], Document]:
    return _reading(kind=kind, values=values)


def _refusal(payload: bytes, topic: StationTopic = TOPIC) -> PayloadError:
    decode = decode_state if topic.channel is Channel.STATE else decode_telemetry
    with pytest.raises(PayloadError) as caught:
        decode(topic, payload)
    assert caught.value.reason in REJECT_REASONS
    return caught.value


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"{not json", "not_json"),
        (lambda d: b"\xff\xfe", "not_json"),
        (lambda d: b"", "not_json"),
        (lambda d: b"[" * 100_000, "too_deep"),
        (lambda d: b'{"a":' * 300 + b"1" + b"}" * 300, "too_deep"),
        (lambda d: b"[1, 2]", "invalid"),
        (lambda d: b"null", "invalid"),
        (lambda d: {**d, "v": 2}, "bad_version"),
        (lambda d: {**d, "v": True}, "bad_version"),
        (lambda d: {**d, "v": 1.0}, "bad_version"),
        (lambda d: {**d, "v": "1"}, "bad_version"),
        (lambda d: {k: v for k, v in d.items() if k != "v"}, "bad_version"),
        (lambda d: {k: v for k, v in d.items() if k not in ("v", "seq")}, "bad_version"),
        (lambda d: {**d, "seq": -1}, "invalid"),
        (lambda d: {**d, "seq": 2**64}, "invalid"),
        (lambda d: {**d, "seq": "1"}, "invalid"),
        (lambda d: {**d, "seq": 1.0}, "invalid"),
        (lambda d: {**d, "seq": True}, "invalid"),
        (lambda d: {**d, "boot_epoch": "1"}, "invalid"),
        (lambda d: {**d, "boot_epoch": -1}, "bad_time"),
        (lambda d: {**d, "boot_epoch": 4_102_444_800}, "bad_time"),
        (lambda d: {**d, "readings": []}, "invalid"),
        (lambda d: {**d, "sent_at": "2026-07-01T08:00:00"}, "invalid"),
        (lambda d: {**d, "sent_at": "9999-12-31T22:00-05:00"}, "bad_time"),
        (lambda d: {**d, "sent_at": "1969-12-31T23:59:59Z"}, "bad_time"),
        (_reading(ts="9999-12-31T22:00-05:00"), "bad_time"),
        (_reading(ts="2100-01-01T00:00:00Z"), "bad_time"),
        (_reading(ts="2099-12-31T23:30:00-01:00"), "bad_time"),
        (_reading(ts="0001-01-01T00:00:00+01:00"), "bad_time"),
        (_reading(sensor_id="st-1.cover-01\n"), "invalid"),
        (lambda d: {**d, "station_id": "st-1\n"}, "invalid"),
        (_values({"tilt_deg": "80"}), "invalid"),
        (_values({"tilt_deg": True}), "invalid"),
        (_values({"tilt_deg": None}), "invalid"),
        (_values({"tilt_deg": 1.0, "pressure_mpa": 0.3}), "unknown_value"),
        (_values({"tilt_deg": 1.0, "tilt": 3.0}), "unknown_value"),
        (_values({"tilt_deg": 1.0, "Tilt": 3.0}), "invalid"),
        (_values({"water_level_m": 0.4}), "missing_value"),
        (_values({"battery_v": 3.6}, kind="pressure"), "missing_value"),
        (_values({"vibration_g": 0.1}, kind="pole"), "missing_value"),
        (_values({"tilt_deg": 1.0, "battery_v": 3.6}, kind="pole"), "unknown_value"),
        (_values({"tilt_deg": 1.0}, kind="pressure"), "unknown_value"),
        (_values({}), "invalid"),
        (lambda d: {**d, "station_id": "st-2"}, "station_mismatch"),
        (_reading(sensor_id="st-2.cover-01"), "foreign_sensor"),
        (_reading(sensor_id="st-10.cover-01"), "foreign_sensor"),
        (_reading(sensor_id="st-1"), "foreign_sensor"),
        (_reading(sensor_id="st-1."), "foreign_sensor"),
        (lambda d: {**d, "extra": 1}, "invalid"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(
    mutate: Callable[[Document], Document | bytes], reason: str
) -> None:
    mutated = mutate(_document())
    payload = mutated if isinstance(mutated, bytes) else json.dumps(mutated).encode()
    assert _refusal(payload).reason == reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_values_are_refused(literal: bytes) -> None:
    payload = encode(batch([tilt(0, 1.0)])).replace(b'"tilt_deg":1.0', b'"tilt_deg":' + literal)
    error = _refusal(payload)
    assert error.reason == "invalid"
    assert "finite" in error.detail


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        (SensorKind.COVER, {"tilt_deg": 1.0}),
        (
            SensorKind.COVER,
            {"tilt_deg": 1.0, "water_level_m": 0.5, "battery_v": 3.6, "gas_ppm": 7.0},
        ),
        (SensorKind.COVER, {"tilt_deg": 1, "signal_dbm": -90}),
        (SensorKind.PRESSURE, {"pressure_mpa": 0.31, "battery_v": 3.6}),
        (SensorKind.POLE, {"tilt_deg": 0.4, "vibration_g": 0.01}),
    ],
)
def test_what_the_simulator_sends_is_valid(kind: SensorKind, values: dict[str, float]) -> None:
    reading = Reading(sensor_id=f"st-1.{kind.value}-01", kind=kind, ts=T0, values=values)
    assert decode_telemetry(TOPIC, encode(batch([reading]))).readings == [reading]


def test_a_device_clock_reset_to_2000_is_accepted() -> None:
    reset = tilt(0, 1.0).model_copy(update={"ts": T0.replace(year=2000, month=1, day=1)})
    sent = batch([reset]).model_copy(update={"sent_at": T0})
    assert decode_telemetry(TOPIC, encode(sent)).readings[0].ts.year == 2000


def test_a_boot_epoch_is_unix_seconds() -> None:
    sent = batch([tilt(0, 1.0)], boot_epoch=int((T0 - timedelta(hours=1)).timestamp()))
    assert decode_telemetry(TOPIC, encode(sent)).boot_epoch == 1_782_889_200


def test_readings_are_checked_when_built_too() -> None:
    with pytest.raises(ValueError, match="unknown_value"):
        Reading(sensor_id="st-1.c", kind=SensorKind.POLE, ts=T0, values={"tilt_deg": 1, "x": 2})
    with pytest.raises(ValueError, match="float_type"):
        Reading(sensor_id="st-1.c", kind=SensorKind.POLE, ts=T0, values={"tilt_deg": True})


def _state(**changes: Any) -> bytes:
    return json.dumps({**json.loads(encode(birth())), **changes}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_state(v=True), "bad_version"),
        (_state(station_id="st-2"), "station_mismatch"),
        (_state(sensors=[json.loads(encode(cover_info("st-2.cover-01")))]), "foreign_sensor"),
        (_state(boot_epoch=-5), "bad_time"),
        (_state(ts="9999-12-31T22:00-05:00"), "bad_time"),
        (_state(status="away"), "invalid"),
        (_state(sensors=[{**json.loads(encode(cover_info())), "lat": "34.7"}]), "invalid"),
        (_state(sensors=[{**json.loads(encode(cover_info())), "grid_code": "٤" * 14}]), "invalid"),
        (b"[" * 100_000, "too_deep"),
    ],
)
def test_bad_births_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    assert _refusal(payload, STATE).reason == reason


def test_a_death_needs_no_inventory() -> None:
    death = birth().model_copy(update={"status": "offline", "sensors": []})
    assert decode_state(STATE, encode(death)).sensors == []


def test_too_large_payloads_are_refused_before_parsing() -> None:
    assert _refusal(b" " * ((1 << 20) + 1)).reason == "too_large"
