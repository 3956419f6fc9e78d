"""The MQTT 3.1.1 packets of ingest's session: encodings checked against the spec's layouts,
and the splitter against every way TCP can cut a stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.mqttwire import (
    CONNACK,
    PUBACK,
    Delivery,
    PacketSplitter,
    ProtocolError,
    Will,
    connect_packet,
    packet,
    pubacks,
    publish_packet,
    subscribe_packet,
)


class _Controls:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bytes]] = []

    def __call__(self, kind: int, flags: int, body: bytes) -> None:
        self.seen.append((kind, flags, body))


def test_connect_carries_the_session_will_and_credentials_as_the_spec_lays_them_out() -> None:
    raw = connect_packet(
        "ingest-1",
        keepalive_s=30,
        clean_session=False,
        username="u",
        password="p",
        will=Will("a/b", b"off", qos=1, retain=True),
    )
    body = b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04]) + b"\x00\x1e"
    body += b"\x00\x08ingest-1" + b"\x00\x03a/b" + b"\x00\x03off" + b"\x00\x01u" + b"\x00\x01p"
    assert raw == bytes([0x10, len(body)]) + body


def test_a_clean_anonymous_connect_sets_only_the_clean_session_flag() -> None:
    raw = connect_packet("c", keepalive_s=5, clean_session=True)
    assert raw == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x05\x00\x01c"


def test_a_password_needs_a_user_name() -> None:
    with pytest.raises(ValueError, match="user name"):
        connect_packet("c", keepalive_s=5, clean_session=False, password="p")


def test_subscribe_publish_and_pubacks() -> None:
    assert subscribe_packet(7, [("a/+", 1)]) == b"\x82\x08\x00\x07\x00\x03a/+\x01"
    assert publish_packet("t", b"x", qos=1, mid=258, retain=True) == b"\x33\x06\x00\x01t\x01\x02x"
    assert publish_packet("t", b"x", qos=1, mid=1, dup=True)[0] == 0x3A
    assert publish_packet("t", b"", qos=0) == b"\x30\x03\x00\x01t"
    assert pubacks([1, 513]) == b"\x40\x02\x00\x01\x40\x02\x02\x01"
    with pytest.raises(ValueError, match="QoS"):
        publish_packet("t", b"", qos=2, mid=1)


@pytest.mark.parametrize("size", [0, 100, 127 - 5, 128, 16_383, 16_384, 2_097_152])
def test_remaining_lengths_of_one_to_four_bytes_read_back(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    splitter = PacketSplitter(_Controls())
    splitter.session = 3
    got = splitter.feed(publish_packet("s/1", payload, qos=1, mid=9))
    assert got == [Delivery("s/1", payload, 9, 1, 3)]


_PUBLISHES = st.lists(
    st.tuples(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20),
        st.binary(max_size=300),
        st.integers(1, 65_535),
        st.sampled_from([0, 1]),
    ),
    max_size=30,
)


@given(messages=_PUBLISHES, cuts=st.lists(st.integers(0, 20_000), max_size=20))
def test_packets_come_out_whole_and_in_order_however_the_stream_is_cut(
    messages: list[tuple[str, bytes, int, int]], cuts: list[int]
) -> None:
    stream = b""
    expected = []
    for topic, payload, mid, qos in messages:
        stream += publish_packet(topic, payload, qos=qos, mid=mid if qos else 0)
        stream += pubacks([mid])  # a control packet between each
        expected.append(Delivery(topic, payload, mid if qos else 0, qos, 0))
    controls = _Controls()
    splitter = PacketSplitter(controls)
    got: list[Delivery] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c < len(stream)}), len(stream)]:
        got += splitter.feed(stream[start:cut])
        start = cut
    assert got == expected
    assert controls.seen == [(PUBACK, 0, mid.to_bytes(2, "big")) for _, _, mid, _ in messages]


def test_a_byte_at_a_time_too() -> None:
    stream = packet(CONNACK, 0, b"\x00\x00") + publish_packet("a", b"b" * 200, qos=1, mid=5)
    controls = _Controls()
    splitter = PacketSplitter(controls)
    got = [d for i in range(len(stream)) for d in splitter.feed(stream[i : i + 1])]
    assert got == [Delivery("a", b"b" * 200, 5, 1, 0)]
    assert controls.seen == [(CONNACK, 0, b"\x00\x00")]


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than four bytes"),
        (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
        (b"\x32\x03\x00\x09t", "shorter than its topic"),
        (b"\x30\x00\x30\x00", "shorter than its topic"),
        (b"\x32\x03\x00\x01t", "shorter than its topic"),
    ],
)
def test_what_mqtt_does_not_allow_is_a_protocol_error(stream: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        PacketSplitter(_Controls()).feed(stream)
