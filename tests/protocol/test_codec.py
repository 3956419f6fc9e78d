import json

import pytest

from protocol import Channel, PayloadError, StationTopic, decode_state, decode_telemetry, encode
from protocol.models import SEQ_MAX
from tests.factories import batch, birth, tilt

TOPIC = StationTopic("st-1", Channel.TELEMETRY)


def test_telemetry_round_trip() -> None:
    sent = batch([tilt(0, 1.0), tilt(1, 2.0)], seq=SEQ_MAX)
    assert decode_telemetry(TOPIC, encode(sent)) == sent


def test_state_round_trip() -> None:
    sent = birth()
    assert decode_state(StationTopic("st-1", Channel.STATE), encode(sent)) == sent


def _document() -> dict[str, object]:
    document: dict[str, object] = json.loads(encode(batch([tilt(0, 1.0)])))
    return document


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"{not json", "not_json"),
        (lambda d: b"\xff\xfe", "not_json"),
        (lambda d: b"[1, 2]", "invalid"),
        (lambda d: {**d, "v": 2}, "bad_version"),
        (lambda d: {k: v for k, v in d.items() if k != "v"}, "bad_version"),
        (lambda d: {**d, "seq": -1}, "invalid"),
        (lambda d: {**d, "seq": 2**64}, "invalid"),
        (lambda d: {**d, "readings": []}, "invalid"),
        (lambda d: {**d, "sent_at": "2026-07-01T08:00:00"}, "invalid"),
        (lambda d: {**d, "station_id": "st-2"}, "station_mismatch"),
        (lambda d: {**d, "extra": 1}, "invalid"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    mutated = mutate(_document())
    payload = mutated if isinstance(mutated, bytes) else json.dumps(mutated).encode()
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(TOPIC, payload)
    assert caught.value.reason == reason


def test_non_finite_values_are_refused() -> None:
    payload = encode(batch([tilt(0, 1.0)])).replace(b'"tilt_deg":1.0', b'"tilt_deg":NaN')
    with pytest.raises(PayloadError, match="non-finite"):
        decode_telemetry(TOPIC, payload)
