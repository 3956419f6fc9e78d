"""Gap reports, re-send commands and their answers: round trips and refusals."""

from __future__ import annotations

import json

import pytest

from protocol import (
    Channel,
    CommandAck,
    GapReport,
    PayloadError,
    ResendRequest,
    StationTopic,
    decode_ack,
    decode_command,
    decode_gap,
    encode,
)
from tests.factories import T0

GAPS = StationTopic("st-1", Channel.GAPS)


def test_a_gap_report_round_trips_and_names_its_sealed_batches() -> None:
    report = GapReport(
        station_id="st-1",
        boot_epoch=1_700_000_000,
        marker_id=3,
        reason="bytes",
        readings=500,
        first_ts=T0,
        last_ts=T0,
        batches=2,
        first_seq=10,
        last_seq=11,
        sent_at=T0,
    )
    assert decode_gap(GAPS, encode(report)) == report


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"station_id": "st-2"}, "station_mismatch"),
        ({"first_seq": 5}, "invalid"),  # without last_seq
        ({"first_seq": 9, "last_seq": 8}, "invalid"),
        ({"readings": -1}, "invalid"),
        ({"reason": "lost"}, "invalid"),
        ({"marker_id": "3"}, "invalid"),
    ],
)
def test_a_malformed_gap_report_is_refused_with_a_reason(
    change: dict[str, object], reason: str
) -> None:
    body = {
        "v": 1,
        "station_id": "st-1",
        "boot_epoch": 1,
        "marker_id": 3,
        "reason": "age",
        "readings": 1,
        "sent_at": "2026-07-01T08:00:00+00:00",
    }
    with pytest.raises(PayloadError) as refused:
        decode_gap(GAPS, json.dumps(body | change).encode())
    assert refused.value.reason == reason


def test_a_resend_request_is_bounded_and_for_its_own_station() -> None:
    topic = StationTopic("st-1", Channel.COMMAND)
    request = ResendRequest(station_id="st-1", request_id=1, first_seq=4, last_seq=9)
    assert decode_command(topic, encode(request)) == request
    with pytest.raises(PayloadError, match="station_mismatch"):
        decode_command(StationTopic("st-2", Channel.COMMAND), encode(request))
    with pytest.raises(ValueError, match="at most"):
        ResendRequest(station_id="st-1", request_id=1, first_seq=0, last_seq=10**6)


def test_a_command_ack_round_trips() -> None:
    ack = CommandAck(
        station_id="st-1",
        request_id=1,
        command="resend",
        resent=3,
        pending=0,
        expired=1,
        unknown=0,
        sent_at=T0,
    )
    assert decode_ack(StationTopic("st-1", Channel.ACK), encode(ack)) == ack
