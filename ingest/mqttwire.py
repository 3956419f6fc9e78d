"""The MQTT 3.1.1 packets ingest's session sends and receives (OASIS MQTT 3.1.1, section 2-3).

Only the subset one persistent subscriber with QoS 1 needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK,
PUBLISH at QoS 0 and 1 both ways, PUBACK both ways, PINGREQ/PINGRESP and DISCONNECT. No QoS 2:
ingest subscribes at QoS 1, so the broker never sends more (3.8.4), and publishes at most QoS 1.

:class:`PacketSplitter` turns the byte stream into packets, PUBLISH decoded on the way: with
1-reading messages this loop runs once per message, so it is written for that (one pass over
the bytes, no per-packet objects but the delivery tuple).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, NamedTuple

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
SUBSCRIBE: Final = 8
SUBACK: Final = 9
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_PACKET: Final = b"\xc0\x00"
DISCONNECT_PACKET: Final = b"\xe0\x00"
MAX_REMAINING: Final = 268_435_455
"""The largest remaining length four bytes can say (2.2.3)."""

CONNACK_REFUSALS: Final = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
SUBACK_FAILURE: Final = 0x80


class ProtocolError(Exception):
    """The broker sent something MQTT 3.1.1 does not allow: the connection is closed."""


class Delivery(NamedTuple):
    """One PUBLISH received. ``session`` is the connection it came on: after a reconnect the
    broker sends unacknowledged messages again, and a packet id of an old connection must not
    be acknowledged on the new one."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int


def _remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise ValueError(f"an MQTT string holds at most 65,535 bytes, not {len(raw)}")
    return struct.pack("!H", len(raw)) + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_REMAINING:
        raise ValueError(f"an MQTT packet holds at most {MAX_REMAINING} bytes")
    return bytes([kind << 4 | flags]) + _remaining(len(body)) + body


class Will(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


def connect_packet(
    client_id: str,
    *,
    keepalive_s: int,
    clean_session: bool,
    username: str | None = None,
    password: str | None = None,
    will: Will | None = None,
) -> bytes:
    """CONNECT (3.1), protocol level 4."""
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 sends a password only with a user name")
    flags = 0x02 if clean_session else 0
    body = _string(client_id)
    if will is not None:
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        body += _string(will.topic) + _string(will.payload)
    if username is not None:
        flags |= 0x80
        body += _string(username)
    if password is not None:
        flags |= 0x40
        body += _string(password)
    header = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s)
    return packet(CONNECT, 0, header + body)


def subscribe_packet(mid: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE (3.8): fixed header flags 0b0010."""
    body = struct.pack("!H", mid) + b"".join(_string(f) + bytes([qos]) for f, qos in filters)
    return packet(SUBSCRIBE, 0x02, body)


def publish_packet(
    topic: str, payload: bytes, *, qos: int, mid: int = 0, retain: bool = False, dup: bool = False
) -> bytes:
    """PUBLISH (3.3) at QoS 0 or 1."""
    if qos not in (0, 1):
        raise ValueError(f"ingest publishes at QoS 0 or 1, not {qos}")
    flags = qos << 1 | (1 if retain else 0) | (0x08 if dup and qos else 0)
    body = _string(topic) + (struct.pack("!H", mid) if qos else b"") + payload
    return packet(PUBLISH, flags, body)


def pubacks(mids: list[int]) -> bytes:
    """PUBACKs (3.4) for ``mids``, in that order, as one write."""
    return b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)


class PacketSplitter:
    """Feeds on the byte stream; PUBLISH packets become :class:`Delivery` tuples, every other
    packet goes to ``control(kind, flags, body)``."""

    __slots__ = ("_control", "_rest", "session")

    def __init__(self, control: Callable[[int, int, bytes], None]) -> None:
        self._rest = b""
        self._control = control
        self.session = 0

    def feed(self, data: bytes) -> list[Delivery]:
        """The deliveries complete in what has arrived so far, oldest first."""
        if self._rest:
            data = self._rest + data
        size = len(data)
        pos = 0
        out: list[Delivery] = []
        session = self.session
        while pos + 2 <= size:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length & 0x80:  # a remaining length of more than one byte (2.2.3)
                length &= 0x7F
                shift = 7
                complete = False
                while start < size:
                    byte = data[start]
                    start += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        complete = True
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("a remaining length longer than four bytes")
                if not complete:
                    break  # the length itself has not all arrived
            end = start + length
            if end > size:
                break
            if first >> 4 == PUBLISH:
                qos = (first >> 1) & 3
                if qos > 1:
                    raise ProtocolError(f"a PUBLISH at QoS {qos} (ingest subscribes at QoS 1)")
                topic_end = start + 2 + (data[start] << 8 | data[start + 1]) if length > 1 else end
                body = topic_end + 2 * qos  # QoS 1: the packet id follows the topic
                if body > end or length < 2:
                    raise ProtocolError("a PUBLISH shorter than its topic")
                mid = data[topic_end] << 8 | data[topic_end + 1] if qos else 0
                topic = data[start + 2 : topic_end].decode("utf-8", "replace")
                out.append(Delivery(topic, data[body:end], mid, qos, session))
            else:
                self._control(first >> 4, first & 0x0F, data[start:end])
            pos = end
        self._rest = data[pos:]
        return out
