"""A paho client that records what the broker did to it: CONNACK, SUBACK, PUBACK reason codes,
messages received, and whether it was disconnected."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocol.connection import MqttAuth

TIMEOUT_S = 5.0


class ProbeError(AssertionError):
    """The broker did not answer as the test needed."""


@dataclass
class Probe:
    port: int
    auth: MqttAuth = field(default_factory=MqttAuth)
    client_id: str = ""
    clean: bool = True
    v5: bool = False
    host: str = "127.0.0.1"
    will: tuple[str, bytes] | None = None
    """Last will (QoS 1, retained), as the edge agent sets its offline state."""
    connack: ReasonCode | None = None
    session_present: bool | None = None
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    disconnects: list[ReasonCode] = field(default_factory=list)
    _suback: dict[int, list[ReasonCode]] = field(default_factory=dict)
    _puback: dict[int, ReasonCode] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _client: mqtt.Client | None = None

    def connect(self, *, expect_ok: bool = True) -> ReasonCode | None:
        """Connect and wait for CONNACK (None: the connection broke before it)."""
        protocol = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if self.v5 else self.clean,
            protocol=protocol,
        )
        client.max_inflight_messages_set(1000)
        self.auth.apply_to_paho(client)
        if self.will is not None:
            client.will_set(self.will[0], self.will[1], qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        self._client = client
        client.connect(self.host, self.port, keepalive=10)
        client.loop_start()
        self._wait(lambda: self.connack is not None or bool(self.disconnects), "CONNACK")
        if expect_ok and (self.connack is None or self.connack.is_failure):
            raise ProbeError(f"connect refused: {self.connack or self.disconnects}")
        return self.connack

    @property
    def client(self) -> mqtt.Client:
        if self._client is None:
            raise ProbeError("not connected")
        return self._client

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        """Subscribe at QoS 1 and return the broker's grant (or refusal) per filter."""
        result, mid = self.client.subscribe([(topic, 1) for topic in topics])
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise ProbeError(f"subscribe failed locally: {result}")
        self._wait(lambda: mid in self._suback, "SUBACK")
        return self._suback[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and wait for the PUBACK (its reason code: MQTT 5 only)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self._puback, f"PUBACK of {topic}")
        return self._puback[info.mid]

    def until(self, done: Callable[[Probe], bool], what: str, timeout: float = TIMEOUT_S) -> None:
        self._wait(lambda: done(self), what, timeout)

    def payloads(self, topic_part: str = "") -> list[bytes]:
        with self._changed:
            return [p for t, p in self.messages if topic_part in t]

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def drop(self) -> None:
        """Vanish without DISCONNECT (the broker publishes the last will)."""
        if self._client is not None:
            sock = self._client.socket()
            self._client.loop_stop()
            if sock is not None:
                sock.close()
            self._client = None

    def _wait(self, done: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProbeError(f"no {what} within {timeout} s")
                self._changed.wait(left)

    def _notify(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        code: ReasonCode,
        _p: object,
    ) -> None:
        def change() -> None:
            self.connack = code
            self.session_present = flags.session_present

        if code.is_failure:
            client.disconnect()  # no reconnect attempts
        self._notify(change)

    def _on_disconnect(
        self, client: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: object
    ) -> None:
        client.disconnect()  # a probe records a lost connection; it never reconnects
        self._notify(lambda: self.disconnects.append(code))

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self._notify(lambda: self.messages.append((message.topic, bytes(message.payload))))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode], _p: object
    ) -> None:
        self._notify(lambda: self._suback.__setitem__(mid, codes))

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, code: ReasonCode, _p: object
    ) -> None:
        self._notify(lambda: self._puback.__setitem__(mid, code))
