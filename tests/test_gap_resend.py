"""Gap re-send end to end: ``citysense serve`` against a real Mosquitto notices batches a station
never delivered, asks for them on the station's ``cmd`` topic, and stores the re-sent batches
exactly once. The station is a plain paho client in the test that answers ``ResendRequest``s from
what it keeps, as the edge agent does from its retention window."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from citysense.broker import MosquittoBroker
from protocol import (
    Channel,
    CommandAck,
    Reading,
    ResendRequest,
    SensorKind,
    StationState,
    StationTopic,
    TelemetryBatch,
    decode_command,
    encode,
)
from tests.conftest import VictoriaMetrics
from tests.factories import cover_info
from tests.serve_process import api, metric, serve, serve_env, wait_for, wait_for_station
from tests.test_exactly_once import journal_seqs, stored_seqs

pytestmark = pytest.mark.integration

BATCHES = 100
WITHHELD = range(40, 50)
"""Batches the station keeps back, as if the broker had dropped them."""


class AnsweringStation:
    """A station that publishes numbered batches and answers re-send requests on its cmd topic
    by publishing the requested batches again, each twice (a redelivery after a lost PUBACK
    looks the same), and a ``CommandAck``."""

    def __init__(self, broker: MosquittoBroker, station_id: str) -> None:
        self.station_id = station_id
        self.sensor = f"{station_id}.cover-01"
        self.t0 = datetime.now(UTC)
        self.requests: list[ResendRequest] = []
        self.answered = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{station_id}")
        self.client.on_message = self._on_command
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(str(StationTopic(station_id, Channel.COMMAND)), qos=1)
        assert self.subscribed.wait(5), "no SUBACK for the cmd topic"
        birth = StationState(
            station_id=station_id,
            status="online",
            boot_epoch=7,
            ts=self.t0,
            sensors=[cover_info(self.sensor)],
        )
        self._publish(Channel.STATE, encode(birth), retain=True)

    def batch(self, seq: int) -> bytes:
        ts = self.t0 + timedelta(milliseconds=10 * seq)
        reading = Reading(
            sensor_id=self.sensor, kind=SensorKind.COVER, ts=ts, values={"tilt_deg": 1.0}
        )
        return encode(
            TelemetryBatch(
                station_id=self.station_id, boot_epoch=7, seq=seq, sent_at=ts, readings=[reading]
            )
        )

    def send(self, seqs: range | list[int]) -> None:
        for seq in seqs:
            self._publish(Channel.TELEMETRY, self.batch(seq))

    def _publish(self, channel: Channel, payload: bytes, *, retain: bool = False) -> None:
        topic = str(StationTopic(self.station_id, channel))
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def _on_command(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        request = decode_command(StationTopic.parse(message.topic), message.payload)
        self.requests.append(request)
        wanted = range(request.first_seq, request.last_seq + 1)
        resent = [seq for seq in wanted if seq < BATCHES]
        topic = str(StationTopic(self.station_id, Channel.TELEMETRY))
        for seq in resent:  # twice, as after a lost PUBACK; on paho's thread: no waiting
            for _ in range(2):
                self.client.publish(topic, self.batch(seq), qos=1)
        answer = CommandAck(
            station_id=self.station_id,
            request_id=request.request_id,
            command="resend",
            resent=len(resent),
            pending=0,
            expired=0,
            unknown=len(wanted) - len(resent),
            sent_at=datetime.now(UTC),
        )
        self.client.publish(str(StationTopic(self.station_id, Channel.ACK)), encode(answer), qos=1)
        self.answered.set()

    def close(self) -> None:
        self.client.disconnect()  # the loop still runs: it sends DISCONNECT and closes the socket
        self.client.loop_stop()


def test_a_gap_is_asked_for_and_the_resent_batches_are_stored_exactly_once(
    mosquitto: MosquittoBroker, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    station_id = f"st-gap-{uuid.uuid4().hex[:6]}"
    env = serve_env(
        mosquitto, tmp_path, victoria_url=victoria.url, CITYSENSE_INGEST_RESEND_AFTER_S="1"
    )
    with serve(env):
        wait_for(lambda: api(env, "/api/v1/health")["mqtt_connected"], 20, "start")
        station = AnsweringStation(mosquitto, station_id)
        try:
            wait_for_station(env, station_id, 10)
            station.send([seq for seq in range(BATCHES) if seq not in WITHHELD])
            wait_for(
                lambda: metric(env, "citysense_ingest_gaps", station=station_id) == len(WITHHELD),
                10,
                "the gap noticed",
            )
            assert station.answered.wait(10), "no re-send request reached the station"
            wait_for(lambda: len(stored_seqs(victoria, station_id)) >= BATCHES, 10, "all stored")
            wait_for(lambda: metric(env, "citysense_ingest_gap_batches") == 0, 10, "gap closed")
            time.sleep(1.0)  # anything late or doubled would show now
            assert stored_seqs(victoria, station_id) == list(range(BATCHES))
            journal = journal_seqs(tmp_path / "journal", station_id)
            assert sorted(journal) == list(range(BATCHES))
            assert max(journal.values()) == 1, "a batch accepted twice"
            first = station.requests[0]
            assert (first.first_seq, first.last_seq) == (WITHHELD[0], WITHHELD[-1])
            assert metric(env, "citysense_ingest_gaps", station=station_id) == 0
            assert metric(env, "citysense_ingest_gaps_filled_total") == len(WITHHELD)
            assert metric(env, "citysense_ingest_resend_requests_total") == len(station.requests)
            wait_for(
                lambda: (
                    metric(env, "citysense_ingest_resend_answers_total", outcome="resent")
                    >= len(WITHHELD)
                ),
                10,
                "the answer counted",
            )
            assert metric(env, "citysense_ingest_gaps_unrecoverable_total", reason="retries") == 0
        finally:
            station.close()
