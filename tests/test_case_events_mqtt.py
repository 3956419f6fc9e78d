"""Case events on MQTT survive a broker restart: a node publishes every case event on
``citysense/v1/center/case-events``; the broker stops, cases keep opening, the broker starts
again, and a subscriber (persistent session) gets every event, in id order."""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citysense.broker import BROKER_CONFIG_DIR, MosquittoBroker
from citysense.node import Node
from protocol import CASE_EVENTS_TOPIC
from tests.center.factories import alert, open_acknowledged
from tests.center.test_delivery_relay import until
from tests.node_harness import serving_node

pytestmark = pytest.mark.integration

MQTT = "mqtt:case-events"


class Subscriber:
    """A persistent-session subscriber: the broker keeps its queue while it is away. It
    subscribes only when the broker has no session for it, so after a reconnect it gets events
    only through the session the broker kept (``sessions``: each CONNACK's session-present)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.ids: list[int] = []
        self.types: list[str] = []
        self.sessions: list[bool] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="platform-bridge", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, *_: object
    ) -> None:
        with self._lock:
            self.sessions.append(flags.session_present)
        if not flags.session_present:
            client.subscribe(CASE_EVENTS_TOPIC, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        event = json.loads(message.payload)
        with self._lock:
            self.ids.append(int(event["id"]))
            self.types.append(str(event["type"]))

    def received(self) -> list[int]:
        with self._lock:
            return list(self.ids)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The dev broker with persistence on: sessions survive its restart (as in production).

    ``user``: started as root, Mosquitto switches to the ``mosquitto`` user, which cannot write
    this temp dir; it then saves nothing at the stop (its log, gone with it, says "Error saving
    in-memory database ... Permission denied") and the restart has no sessions to restore."""
    store = tmp_path / "mosquitto"
    store.mkdir()
    config = tmp_path / "persistent.conf"
    dev = (BROKER_CONFIG_DIR / "dev.conf").read_text()
    persistence = f"persistence true\npersistence_location {store}/\nuser {getpass.getuser()}"
    config.write_text(dev.replace("persistence false", persistence))
    broker = MosquittoBroker(config=config).start()
    try:
        yield broker
    finally:
        broker.stop()


async def open_cases(node: Node, count: int, prefix: str) -> None:
    """``count`` live urgent cases, three events each (opened, register, acknowledge)."""
    now = datetime.now(UTC)
    for i in range(count):
        opened = alert(sensor_id=f"st-1.{prefix}{i}", started_at=now - timedelta(seconds=20))
        await open_acknowledged(node.service, opened, now)


async def test_case_events_published_while_the_broker_was_down_all_arrive(
    persistent_broker: MosquittoBroker, tmp_path: Path
) -> None:
    subscriber = Subscriber(persistent_broker)
    fast = {"delivery": {"mqtt_timeout_s": 0.5}}
    restarted = MosquittoBroker(config=persistent_broker.config, port=persistent_broker.port)
    try:
        async with serving_node(persistent_broker, tmp_path, center_options=fast) as node:
            (relay,) = node.relays
            assert relay.name == MQTT
            await until(node.consumer.connected.is_set, "the node's session")
            await open_cases(node, 2, "before")
            await until(lambda: relay.status.cursor == 6, "published")
            await until(lambda: len(subscriber.received()) == 6, "received")

            persistent_broker.stop()  # SIGTERM: it saves its sessions and queues
            assert (tmp_path / "mosquitto" / "mosquitto.db").exists(), "the broker saved nothing"
            await open_cases(node, 3, "while-down")
            await until(lambda: relay.status.failed["broker_disconnected"] > 0, "retrying")
            assert relay.status.cursor == 6
            await until(lambda: relay.status.lag == 9, "the lag while it waits")

            restarted.start()
            await until(lambda: relay.status.cursor == 15, "published after the restart")
            # The node and the subscriber reconnect about as soon as each other (paho's 1 s
            # delay): event 7 may reach the broker before the subscriber is back. The broker
            # restored the subscriber's session (and its subscription) from its file before it
            # listened, so the event waits in that session's queue.
            try:
                await until(lambda: set(subscriber.received()) >= set(range(7, 16)), "received", 20)
            except TimeoutError:  # say what arrived, and what the broker said
                received, log = subscriber.received(), restarted.log()[-2000:]
                raise AssertionError(f"received {received}; the broker: {log}") from None
            await open_cases(node, 1, "after")
            await until(lambda: set(subscriber.received()) >= set(range(16, 19)), "live again")
    finally:
        subscriber.close()
        restarted.stop()
    assert subscriber.sessions == [False, True]  # the restart kept its session
    ids = subscriber.received()
    assert list(dict.fromkeys(ids)) == list(range(1, 19))  # every event, in id order
    assert len(ids) - 18 <= 1  # a publish in flight at the stop may come twice
    assert set(subscriber.types) == {"opened", "transition"}
