"""The fast telemetry decoder says what the models say: the same batch, or the same refusal.

Every payload here goes through ``TelemetryDecoder`` and through ``decode_telemetry``; they must
agree on accepting it, on the reason when refusing, and on every field when accepting
(instants and UTC offsets of the times included). Valid traffic must take the fast path, or
the decoder would be slow for nothing.
"""

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Channel,
    PayloadError,
    SensorKind,
    StationTopic,
    TelemetryDecoder,
    decode_telemetry,
    encode,
)
from protocol.fast import BatchView, KnownIds, as_model
from tests.factories import batch, tilt
from tests.protocol.test_fuzz import FIELDS, documents

TOPIC = StationTopic("st-1", Channel.TELEMETRY)
DIFF = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _content(message: BatchView) -> tuple[Any, ...]:
    def when(ts: datetime) -> tuple[datetime, object]:
        return ts, ts.utcoffset()

    return (
        message.station_id,
        message.boot_epoch,
        message.seq,
        when(message.sent_at),
        [(r.sensor_id, r.kind, when(r.ts), r.values) for r in message.readings],
    )


def _agree(payload: bytes, topic: StationTopic = TOPIC) -> str:
    """Both decoders on ``payload``: "fast", "slow" (accepted by the models' path) or the
    reason both refused it with."""
    decoder = TelemetryDecoder()
    expected: BatchView | PayloadError
    try:
        expected = decode_telemetry(topic, payload)
    except PayloadError as exc:
        expected = exc
    if isinstance(expected, PayloadError):
        with pytest.raises(PayloadError) as refused:
            decoder(topic, payload)
        assert (refused.value.reason, refused.value.detail) == (expected.reason, expected.detail)
        return expected.reason
    got = decoder(topic, payload)
    assert _content(got) == _content(expected)
    return "fast" if decoder.fast else "slow"


def _document() -> dict[str, Any]:
    readings = [tilt(0, 1.5), tilt(1, 2.25, "st-1.cover-02")]
    document: dict[str, Any] = json.loads(encode(batch(readings)))
    return document


def test_valid_traffic_takes_the_fast_path() -> None:
    assert _agree(encode(batch([tilt(0, 1.0), tilt(5, 80.0)]))) == "fast"


def test_the_fast_batch_converts_to_the_model() -> None:
    payload = encode(batch([tilt(0, 1.0)]))
    assert as_model(TelemetryDecoder()(TOPIC, payload)) == decode_telemetry(TOPIC, payload)


@pytest.mark.parametrize(
    ("ts", "path"),
    [
        ("2026-07-01T08:00:00Z", "fast"),
        ("2026-07-01T08:00:00.123456+08:00", "fast"),
        ("2026-07-01t08:00:00z", "fast"),
        ("2026-07-01 08:00:00Z", "fast"),
        ("2026-07-01T08:00:00-00:00", "fast"),
        ("2026-07-01T08:00:00+0800", "fast"),
        # msgspec rounds a 7th digit, pydantic truncates: the models decide
        ("2026-07-01T08:00:00.1234567Z", "slow"),
        ("2026-07-01T08:00:00.9999999Z", "slow"),
        ("2026-07-01T08:00Z", "slow"),  # no seconds: msgspec refuses, pydantic accepts
        ("2026-07-01T08:00:00,5Z", "slow"),
        ("2026-07-01T08:00:00", "invalid"),  # naive
        ("2026-07-01", "invalid"),
        ("1969-12-31T23:59:59Z", "bad_time"),
        ("2100-01-01T00:00:00Z", "bad_time"),
        ("2099-12-31T23:59:59.999999Z", "fast"),
        ("1970-01-01T00:00:00Z", "fast"),
        ("1970-01-01T00:00:00+01:00", "bad_time"),
        ("9999-12-31T22:00:00-05:00", "bad_time"),
        ("2026-02-29T00:00:00Z", "invalid"),
        ("2026-07-01T24:00:00Z", "invalid"),
        ("2026-07-01T23:59:60Z", "invalid"),
        ("20260701T080000Z", "invalid"),
    ],
)
def test_times(ts: str, path: str) -> None:
    document = _document()
    document["readings"][0]["ts"] = ts
    assert _agree(json.dumps(document).encode()) == path
    document = _document()
    document["sent_at"] = ts
    assert _agree(json.dumps(document).encode()) == path


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ('"boot_epoch":1', "fast"),
        ('"boot_epoch":1.0', "invalid"),
        ('"boot_epoch":true', "invalid"),
        ('"boot_epoch":-1', "bad_time"),
        ('"boot_epoch":4102444800', "bad_time"),
        ('"seq":9223372036854775807', "fast"),
        ('"seq":18446744073709551615', "slow"),  # past int64: the models decide
        ('"seq":18446744073709551616', "invalid"),
        ('"v":1.0', "bad_version"),
        ('"v":true', "bad_version"),
        ('"v":2', "bad_version"),
        ('"v":1,"v":1', "fast"),
    ],
)
def test_integers(raw: str, path: str) -> None:
    document = _document()
    name = raw.split('"')[1]
    del document[name]
    text = json.dumps(document)
    assert _agree(("{" + raw + "," + text[1:]).encode()) == path


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ('{"tilt_deg":1}', "fast"),
        ('{"tilt_deg":-0.0,"gas_ppm":1e308}', "fast"),
        ('{"tilt_deg":1e400}', "invalid"),
        ('{"tilt_deg":NaN}', "invalid"),
        ('{"tilt_deg":"1"}', "invalid"),
        ('{"tilt_deg":true}', "invalid"),
        ('{"tilt_deg":null}', "invalid"),
        ('{"tilt_deg":123456789012345678901234567890}', "fast"),
        ('{"tilt_deg":1,"tilt_deg":2}', "fast"),
        ('{"tilt_deg":1,"pressure_mpa":2}', "unknown_value"),
        ('{"water_level_m":1}', "missing_value"),
        ('{"Tilt_deg":1}', "invalid"),
        ("{}", "invalid"),
        ('{"tilt_deg":12.1234567}', "slow"),  # looks like a precise time: the models decide
    ],
)
def test_values(values: str, path: str) -> None:
    document = _document()
    document["readings"][0]["values"] = "@VALUES@"
    payload = json.dumps(document).replace('"@VALUES@"', values)
    assert _agree(payload.encode()) == path


@pytest.mark.parametrize(
    ("sensor_id", "path"),
    [
        ("st-1.cover-01", "fast"),
        ("st-1.a:b_c.d", "fast"),
        ("st-1.", "foreign_sensor"),
        ("st-2.cover-01", "foreign_sensor"),
        ("st-1.cover 01", "invalid"),
        ("st-1.cover-01\n", "invalid"),
        ("st-1." + "x" * 123, "fast"),
        ("st-1." + "x" * 124, "invalid"),
        ("st-1.kö", "invalid"),
    ],
)
def test_sensor_ids(sensor_id: str, path: str) -> None:
    document = _document()
    document["readings"][0]["sensor_id"] = sensor_id
    assert _agree(json.dumps(document).encode()) == path


def test_a_station_on_another_stations_topic() -> None:
    other = StationTopic("st-2", Channel.TELEMETRY)
    assert _agree(json.dumps(_document()).encode(), other) == "station_mismatch"


def test_every_kind_and_value_name() -> None:
    document = _document()
    document["readings"] = [
        {"sensor_id": "st-1.p", "kind": "pressure", "ts": "2026-07-01T08:00:00Z",
         "values": {"pressure_mpa": 0.3, "battery_v": 3.6, "signal_dbm": -80}},
        {"sensor_id": "st-1.l", "kind": "pole", "ts": "2026-07-01T08:00:00Z",
         "values": {"tilt_deg": 0.3, "vibration_g": 0.01}},
        {"sensor_id": "st-1.c", "kind": "cover", "ts": "2026-07-01T08:00:00Z",
         "values": {"tilt_deg": 0.3, "water_level_m": 1, "gas_ppm": 2, "battery_v": 3,
                    "signal_dbm": -1}},
    ]  # fmt: skip
    assert _agree(json.dumps(document).encode()) == "fast"
    document["readings"][0]["kind"] = "Pressure"
    assert _agree(json.dumps(document).encode()) == "invalid"


@pytest.mark.parametrize("extra", ["batch", "reading"])
def test_unknown_fields(extra: str) -> None:
    document = _document()
    (document if extra == "batch" else document["readings"][0])["note"] = 1
    assert _agree(json.dumps(document).encode()) == "invalid"


def test_limits() -> None:
    document = _document()
    document["readings"] = document["readings"][:1] * 1000
    assert _agree(json.dumps(document).encode()) == "fast"
    document["readings"] = document["readings"][:1] * 1001
    assert _agree(json.dumps(document).encode()) == "invalid"
    document["readings"] = []
    assert _agree(json.dumps(document).encode()) == "invalid"
    assert _agree(b" " * (1 << 20) + json.dumps(_document()).encode()) == "too_large"
    assert _agree(b"[" * 100_000) == "too_deep"


def test_a_sensor_id_met_before_is_still_checked_against_its_station() -> None:
    decoder = TelemetryDecoder()
    document = _document()
    document["readings"] = document["readings"][:1]
    assert decoder(TOPIC, json.dumps(document).encode()).station_id == "st-1"
    document["station_id"] = "st-2"
    with pytest.raises(PayloadError) as refused:
        decoder(StationTopic("st-2", Channel.TELEMETRY), json.dumps(document).encode())
    assert refused.value.reason == "foreign_sensor"
    assert decoder.fast == 1


def test_known_ids_stay_bounded_and_still_check() -> None:
    known = KnownIds(kept=3)
    decoder = TelemetryDecoder(known)
    for index in range(10):
        document = _document()
        document["readings"][0]["sensor_id"] = f"st-1.s{index}"
        decoder(TOPIC, json.dumps(document).encode())
        assert len(known._ids) <= 3
    document["readings"][0]["sensor_id"] = "st-1.bad id"
    with pytest.raises(PayloadError):
        decoder(TOPIC, json.dumps(document).encode())


times = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
    ),
    st.sampled_from([1969, 1970, 2000, 2026, 2099, 2100]),
    st.integers(1, 12),
    st.integers(1, 31),
    st.sampled_from(["T", "t", " ", "_"]),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 61),
    st.sampled_from(["", "."]) | st.integers(0, 10**12).map(lambda n: f".{n}"),
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+08:00", "+0800", "+08", "-23:59"])
    | st.builds(lambda h, m: f"+{h:02d}:{m:02d}", st.integers(0, 25), st.integers(0, 60)),
)
values = st.dictionaries(
    st.sampled_from(["tilt_deg", "water_level_m", "gas_ppm", "pressure_mpa", "vibration_g", "x"]),
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70),
    max_size=4,
)
readings = st.fixed_dictionaries(
    {
        "sensor_id": st.sampled_from(["st-1.a", "st-1.b:c", "st-2.a", "st-1."])
        | st.text(max_size=8).map(lambda s: "st-1." + s),
        "kind": st.sampled_from([kind.value for kind in SensorKind] + ["other"]),
        "ts": times,
        "values": values,
    }
)
batches = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "station_id": st.just("st-1"),
        "boot_epoch": st.integers(-1, 2**33),
        "seq": st.integers(-1, 2**65),
        "sent_at": times,
        "readings": st.lists(readings, min_size=1, max_size=3),
    }
)


@DIFF
@given(batches)
def test_generated_batches_agree(document: dict[str, Any]) -> None:
    _agree(json.dumps(document).encode())


@DIFF
@given(st.sampled_from(FIELDS["telemetry"]), documents)
def test_a_batch_with_one_field_replaced_agrees(field: str, value: Any) -> None:
    _agree(json.dumps({**_document(), field: value}).encode())


@DIFF
@given(st.sampled_from(FIELDS["reading"]), documents)
def test_a_reading_with_one_field_replaced_agrees(field: str, value: Any) -> None:
    document = _document()
    document["readings"][0][field] = value
    _agree(json.dumps(document).encode())


@DIFF
@given(st.integers(min_value=0, max_value=600), st.binary(min_size=1, max_size=8))
def test_a_batch_cut_or_spliced_anywhere_agrees(at: int, junk: bytes) -> None:
    payload = json.dumps(_document()).encode()
    _agree(payload[:at])
    _agree(payload[:at] + junk + payload[at:])
