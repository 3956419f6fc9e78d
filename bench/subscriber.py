"""A paho subscriber that only counts: the receiving end of the broker measurements."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.report import BenchError

CONNECT_TIMEOUT_S = 10.0


class CountingSubscriber:
    """Counts messages and bytes on ``topic_filter`` and when the first and last one arrived.

    paho runs its network loop in its own thread; the counters are only written there. With a
    ``client_id`` and ``clean_session=False`` it resumes a persistent session (the drain
    baselines of ``bench.drain``) and counts what the broker queued for it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str | Sequence[str],
        qos: int,
        *,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        self.host, self.port, self.qos = host, port, qos
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self.filters = [(f, qos) for f in filters]
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.messages = self.bytes = 0
        self.first = self.last = 0.0

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, code: Any, _p: object
    ) -> None:
        if not code.is_failure:
            client.subscribe(self.filters)

    def _on_subscribe(self, _c: object, _u: object, _mid: int, _codes: object, _p: object) -> None:
        self._subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if not self.messages:
            self.first = now
        self.messages += 1
        self.bytes += len(message.payload)
        self.last = now

    def __enter__(self) -> CountingSubscriber:
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.__exit__(None, None, None)
            raise BenchError(f"could not subscribe at {self.host}:{self.port}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, expected: int, quiet_s: float = 1.0, limit_s: float = 60.0) -> int:
        """Wait for ``expected`` messages or a ``quiet_s`` pause, at most ``limit_s``."""
        deadline = time.monotonic() + limit_s
        seen, changed = self.messages, time.monotonic()
        while self.messages < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            if self.messages != seen:
                seen, changed = self.messages, time.monotonic()
            elif time.monotonic() - changed > quiet_s:
                break
        return self.messages

    def rates(self) -> dict[str, float]:
        """Messages/s and bytes/s from the first message received to the last."""
        span = self.last - self.first
        if self.messages < 2 or span <= 0:
            raise BenchError(f"received {self.messages} messages: too few for a rate")
        return {
            "messages_per_s": (self.messages - 1) / span,
            "bytes_per_s": self.bytes * (self.messages - 1) / self.messages / span,
            "received_messages": float(self.messages),
        }
