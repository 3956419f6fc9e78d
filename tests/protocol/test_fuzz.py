"""Whatever arrives on a topic, decoding either returns a message or raises ``PayloadError``."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    REJECT_REASONS,
    Channel,
    PayloadError,
    StationTopic,
    decode_state,
    decode_telemetry,
    encode,
)
from protocol.codec import MAX_PAYLOAD_BYTES
from tests.factories import batch, birth, tilt

TELEMETRY = StationTopic("st-1", Channel.TELEMETRY)
STATE = StationTopic("st-1", Channel.STATE)
FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["cover", "pole", "tilt_deg", "st-1", "st-1.cover-01", "2026-07-01T08:00Z"])
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=30,
)
FIELDS = {
    "telemetry": ["v", "station_id", "boot_epoch", "seq", "sent_at", "readings"],
    "reading": ["sensor_id", "kind", "ts", "values"],
    "state": ["v", "station_id", "status", "boot_epoch", "ts", "sensors"],
}


def _decode_or_refuse(payload: bytes) -> None:
    reasons = []
    for decode, topic in ((decode_telemetry, TELEMETRY), (decode_state, STATE)):
        try:
            decode(topic, payload)
        except PayloadError as exc:  # anything else fails the test
            reasons.append(exc.reason)
    assert set(reasons) <= set(REJECT_REASONS)


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()  # NaN and Infinity included, as some clients send them


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(payload: bytes) -> None:
    _decode_or_refuse(payload)


@FUZZ
@given(documents)
def test_arbitrary_json(document: Any) -> None:
    _decode_or_refuse(_dumps(document))


@FUZZ
@given(st.sampled_from(FIELDS["telemetry"]), documents)
def test_a_batch_with_one_field_replaced(field: str, value: Any) -> None:
    document = json.loads(encode(batch([tilt(0, 1.0)])))
    _decode_or_refuse(_dumps({**document, field: value}))


@FUZZ
@given(st.sampled_from(FIELDS["reading"]), documents)
def test_a_reading_with_one_field_replaced(field: str, value: Any) -> None:
    document = json.loads(encode(batch([tilt(0, 1.0)])))
    document["readings"][0][field] = value
    _decode_or_refuse(_dumps(document))


@FUZZ
@given(st.sampled_from(FIELDS["state"]), documents)
def test_a_birth_with_one_field_replaced(field: str, value: Any) -> None:
    document = json.loads(encode(birth()))
    _decode_or_refuse(_dumps({**document, field: value}))


@FUZZ
@given(st.integers(min_value=0, max_value=2_000), st.binary(min_size=1, max_size=8))
def test_a_batch_cut_or_spliced_anywhere(at: int, junk: bytes) -> None:
    payload = encode(batch([tilt(0, 1.0), tilt(1, 2.0)]))
    _decode_or_refuse(payload[:at])
    _decode_or_refuse(payload[:at] + junk + payload[at:])


@pytest.mark.parametrize("opener", [b"[", b'{"a":', b'[{"a":', b'{"readings":['])
def test_deep_nesting_never_recurses(opener: bytes) -> None:
    payload = opener * (MAX_PAYLOAD_BYTES // len(opener))
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(TELEMETRY, payload)
    assert caught.value.reason == "too_deep"
