"""Poison messages among valid traffic: ingest takes each message as one unit of work.

A whole node (ingest + rules + case store, VictoriaMetrics as its store) gets 10,000 generated
malformed messages interleaved with two stations' valid traffic and one real incident. Each
malformed message that reaches ingest is counted under its reject reason and dead-lettered with
its bytes; every valid reading is stored; the incident is one case; the node keeps answering,
and a restart (which gets the retained poison again) counts it again. When the dead letters
cannot be written, ingest stops acknowledging instead of dying, and resumes once they can.

The malformed messages come from a seeded generator (``Poison``): each is a valid message with
exactly one fault, so its reject reason follows from docs/contract.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from citysense.broker import MosquittoBroker
from citysense.node import Node
from ingest.dead_letters import JsonlDeadLetters
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from protocol import (
    KIND_VALUES,
    PRIMARY_VALUE,
    Channel,
    PayloadError,
    SensorKind,
    StationTopic,
    decode_telemetry,
    encode,
)
from protocol.codec import MAX_PAYLOAD_BYTES
from rules import ClockPolicy, RuleEngine, load_rules
from tests.conftest import VictoriaMetrics
from tests.factories import batch, birth, cover_info, tilt
from tests.node_harness import node_client as signed_in_client
from tests.node_harness import serving_node

pytestmark = pytest.mark.integration

SEED = 20260701
MALFORMED = 10_000
VALID_BATCHES = 40
"""Per station; each covers one second of event time."""
INCIDENT_BATCHES = range(10, 15)
"""The cover of station A reads 75° in these batches (5 s, the rule holds 3 s)."""
QUICK_RULES = Path(__file__).parent / "data" / "quick_rules.yaml"
RAW = "@@raw@@"
"""Stands for a JSON token ``json.dumps`` cannot write (``1e400``, ``NaN``)."""
BAD_TIMES = (
    "9999-12-31T22:00-05:00",
    "9999-12-31T23:59:59.999999-23:59",
    "1969-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    reason: str | None
    """The reject reason it must get; None for valid traffic and undelivered topics."""
    delivered: bool = True
    """Whether ingest's subscriptions (``citysense/v1/stations/+/telemetry|state``) match."""
    retain: bool = False


def telemetry(station_id: str) -> str:
    return f"citysense/v1/stations/{station_id}/telemetry"


def state(station_id: str) -> str:
    return f"citysense/v1/stations/{station_id}/state"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def dump(document: Any, raw: str = "") -> bytes:
    return json.dumps(document, ensure_ascii=False).replace(f'"{RAW}"', raw).encode()


# -- valid traffic ----------------------------------------------------------------------------


@dataclass
class Station:
    station_id: str
    sensors: dict[str, SensorKind]

    def birth(self, ts: datetime) -> Message:
        document = {
            "v": 1,
            "station_id": self.station_id,
            "status": "online",
            "boot_epoch": int(ts.timestamp()),
            "ts": iso(ts),
            "sensors": [sensor_doc(s, k) for s, k in self.sensors.items()],
        }
        return Message(state(self.station_id), dump(document), None, retain=True)

    def batch(self, seq: int, base: datetime, tilt: float) -> dict[str, Any]:
        start = base + timedelta(seconds=seq + 1)
        readings = [
            {
                "sensor_id": sensor_id,
                "kind": kind.value,
                "ts": iso(start + timedelta(milliseconds=200 * i)),
                "values": valid_values(kind, tilt, i),
            }
            for sensor_id, kind in self.sensors.items()
            for i in range(5)
        ]
        return {
            "v": 1,
            "station_id": self.station_id,
            "boot_epoch": int(base.timestamp()),
            "seq": seq,
            "sent_at": iso(start + timedelta(seconds=0.9)),
            "readings": readings,
        }


def valid_values(kind: SensorKind, tilt: float, i: int) -> dict[str, float]:
    if kind is SensorKind.PRESSURE:
        return {"pressure_mpa": 0.3 + i / 100, **({"battery_v": 3.6} if i == 0 else {})}
    if kind is SensorKind.POLE:
        return {"tilt_deg": 0.5, "vibration_g": 0.01 * i}
    return {"tilt_deg": tilt}


def sensor_doc(sensor_id: str, kind: SensorKind, class_code: str = "0103") -> dict[str, Any]:
    return {
        "sensor_id": sensor_id,
        "kind": kind.value,
        "class_code": class_code,
        "component_id": f"410105{class_code}000123",
        "grid_code": "41010500100201",
        "lon": 113.68,
        "lat": 34.78,
    }


def padded(document: dict[str, Any], size: int) -> bytes:
    payload = dump(document)
    return payload + b" " * (size - len(payload))


@dataclass
class Valid:
    """Two stations' births and batches (consecutive seqs); station A's cover has the incident.

    Station B's id has a dot, so station ``<B minus .1>`` may name B's sensors in a birth:
    the codec lets it through and the registry refuses it (``sensor_claimed``)."""

    a: Station
    b: Station
    base: datetime

    @classmethod
    def build(cls, prefix: str) -> Valid:
        a, b = f"{prefix}-a", f"{prefix}-b.1"
        return cls(
            Station(a, {f"{a}.cover-01": SensorKind.COVER, f"{a}.main-01": SensorKind.PRESSURE}),
            Station(b, {f"{b}.cover-01": SensorKind.COVER, f"{b}.pole-01": SensorKind.POLE}),
            datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=VALID_BATCHES + 5),
        )

    @property
    def cover(self) -> str:
        return f"{self.a.station_id}.cover-01"

    def births(self) -> list[Message]:
        return [self.a.birth(self.base), self.b.birth(self.base)]

    def batches(self) -> Iterator[Message]:
        for seq in range(VALID_BATCHES):
            for station in (self.a, self.b):
                incident = station is self.a and seq in INCIDENT_BATCHES
                document = station.batch(seq, self.base, 75.0 if incident else 2.0)
                payload = dump(document)
                if station is self.b and seq == VALID_BATCHES // 2:
                    payload = padded(document, MAX_PAYLOAD_BYTES)  # the largest valid size
                yield Message(telemetry(station.station_id), payload, None)

    def points(self, station: Station) -> int:
        return sum(
            len(reading["values"])
            for seq in range(VALID_BATCHES)
            for reading in station.batch(seq, self.base, 2.0)["readings"]
        )


# -- malformed traffic ------------------------------------------------------------------------


class Poison:
    """Malformed messages, each a valid message with one fault, drawn from a seeded RNG."""

    def __init__(self, rng: random.Random, prefix: str, valid: Valid) -> None:
        self.rng = rng
        self.prefix = prefix
        self.valid = valid
        self.stations = [
            valid.a.station_id,
            valid.b.station_id,
            *(f"{prefix}-x{n}" for n in range(5)),
        ]
        self.claimant = valid.b.station_id.removesuffix(".1")
        self.makers: list[Callable[[str], Message]] = [
            self.invalid,
            self.invalid_birth,
            self.unknown_value,
            self.missing_value,
            self.bad_time,
            self.bad_version,
            self.station_mismatch,
            self.foreign_sensor,
            self.not_json,
            self.too_deep,
            self.sensor_claimed,
            self.bad_topic,
            self.undelivered,
        ]

    def draw(self) -> Message:
        return self.rng.choice(self.makers)(self.rng.choice(self.stations))

    def specials(self) -> list[Message]:
        """The cases the brief names, once each (besides what ``draw`` makes)."""
        deep = b"[" * 100_000
        b = self.valid.b.station_id
        too_large = self.valid.b.batch(VALID_BATCHES // 2, self.valid.base, 2.0)
        return [
            Message(state(f"{self.prefix}-deep"), deep, "too_deep", retain=True),
            Message(telemetry(b), deep, "too_deep"),
            Message(telemetry(b), padded(too_large, MAX_PAYLOAD_BYTES + 1), "too_large"),
            Message(telemetry(b), self.rng.randbytes(MAX_PAYLOAD_BYTES * 3 // 2), "too_large"),
            Message(telemetry(b), b'{"v":1,' + b" " * (MAX_PAYLOAD_BYTES - 7), "not_json"),
            self._batch_fault(b, "bad_time", lambda d: d.update(sent_at=BAD_TIMES[0])),
            self._birth_fault(b, "bad_time", lambda d: d.update(ts=BAD_TIMES[0])),
            Message(telemetry(""), self._good_batch(b), "bad_topic"),
            Message(f"citysense/v1/stations/{b}/other", b"{}", None, delivered=False),
        ]

    # one generator per reason ------------------------------------------------------------

    def invalid(self, station: str) -> Message:
        rng = self.rng
        faults: list[Callable[[dict[str, Any]], object]] = [
            lambda d: self._values(d).update({self._primary(d): rng.choice(["80", True, None])}),
            lambda d: self._values(d).update({self._primary(d): [80]}),
            lambda d: d.update(firmware="1.2"),
            lambda d: d.update(seq=rng.choice([-1, 1.5, "7", 2**64, None])),
            lambda d: d.update(boot_epoch=rng.choice([1.5, "1", None])),
            lambda d: d.update(readings=rng.choice([[], {}, "x", None])),
            lambda d: d["readings"][0].update(kind=rng.choice(["lamp", "COVER", None])),
            lambda d: d["readings"][0].update(sensor_id=f"{station}.bad id"),
            lambda d: d.update(station_id=f"{station}!"),
            lambda d: d.pop(rng.choice(["sent_at", "readings", "seq", "station_id"])),
            lambda d: d["readings"][0].update(ts=rng.choice(["2026-07-01T08:00:00", "soon"])),
            lambda d: self._values(d).update(Tilt=1.0),
        ]
        if rng.random() < 0.1:  # not a JSON object (a shallow array below the depth limit too)
            payload = rng.choice([b"[]", b'"x"', b"42", b"null", b"[" * 150 + b"]" * 150])
            return Message(telemetry(station), payload, "invalid")
        if rng.random() < 0.1:  # a number JSON cannot hold or a bare NaN
            document = self._batch(station)
            self._values(document)[self._primary(document)] = RAW
            token = rng.choice(["1e400", "-1e999", "NaN", "Infinity"])
            return Message(telemetry(station), dump(document, token), "invalid")
        return self._batch_fault(station, "invalid", rng.choice(faults))

    def invalid_birth(self, station: str) -> Message:
        rng = self.rng
        faults: list[Callable[[dict[str, Any]], object]] = [
            lambda d: d["sensors"][0].update(class_code=rng.choice(["9999", "01", "0199"])),
            lambda d: d["sensors"][0].update(component_id="123"),
            lambda d: d["sensors"][0].update(lon=rng.choice([200, -180.5, "113"])),
            lambda d: d["sensors"][0].update(address="x" * 201),
            lambda d: d.update(status=rng.choice(["dead", "ONLINE", None])),
        ]
        return self._birth_fault(station, "invalid", rng.choice(faults))

    def unknown_value(self, station: str) -> Message:
        def fault(document: dict[str, Any]) -> None:
            kind = SensorKind(document["readings"][-1]["kind"])
            others = {n for k in SensorKind for n in KIND_VALUES[k]} - set(KIND_VALUES[kind])
            name = self.rng.choice([*sorted(others), "humidity", "temp_c"])
            document["readings"][-1]["values"][name] = 1.0

        return self._batch_fault(station, "unknown_value", fault)

    def missing_value(self, station: str) -> Message:
        def fault(document: dict[str, Any]) -> None:
            reading = document["readings"][-1]
            kind = SensorKind(reading["kind"])
            optional = [n for n in KIND_VALUES[kind] if n != PRIMARY_VALUE[kind]]
            reading["values"] = {self.rng.choice(optional): 3.3}

        return self._batch_fault(station, "missing_value", fault)

    def bad_time(self, station: str) -> Message:
        rng = self.rng
        year = rng.randint(2100, 9999)
        bad = rng.choice([*BAD_TIMES, f"{year}-06-01T12:00:00+08:00"])
        faults: list[Callable[[dict[str, Any]], object]] = [
            lambda d: d["readings"][-1].update(ts=bad),
            lambda d: d.update(sent_at=bad),
            lambda d: d.update(boot_epoch=rng.choice([-1, 4102444800, 2**70])),
        ]
        if rng.random() < 0.3:
            return self._birth_fault(station, "bad_time", lambda d: d.update(ts=bad))
        return self._batch_fault(station, "bad_time", rng.choice(faults))

    def bad_version(self, station: str) -> Message:
        version = self.rng.choice([2, 0, -1, "1", True, 1.0, None, [1], 2**70, "missing"])

        def fault(document: dict[str, Any]) -> None:
            if version == "missing":
                del document["v"]
            else:
                document["v"] = version

        if self.rng.random() < 0.3:
            return self._birth_fault(station, "bad_version", fault)
        return self._batch_fault(station, "bad_version", fault)

    def station_mismatch(self, station: str) -> Message:
        other = self.rng.choice([s for s in self.stations if s != station])
        if self.rng.random() < 0.3:
            return self._birth_fault(
                station, "station_mismatch", lambda d: d.update(station_id=other)
            )
        return self._batch_fault(station, "station_mismatch", lambda d: d.update(station_id=other))

    def foreign_sensor(self, station: str) -> Message:
        others = [s for s in self.stations if s != station and not s.startswith(f"{station}.")]
        sensor = self.rng.choice([f"{self.rng.choice(others)}.cover-01", f"{station}.", station])
        if self.rng.random() < 0.3:
            return self._birth_fault(
                station, "foreign_sensor", lambda d: d["sensors"][-1].update(sensor_id=sensor)
            )
        return self._batch_fault(
            station, "foreign_sensor", lambda d: d["readings"][-1].update(sensor_id=sensor)
        )

    def not_json(self, station: str) -> Message:
        rng = self.rng
        good = self._good_batch(station)
        choices = [
            good[: rng.randrange(len(good) - 1)],  # truncated
            bytes([rng.randint(0x80, 0xFF)]) + rng.randbytes(rng.randint(0, 200)),
            good.replace(b'"', b"'"),
            good[:-2] + b",]}",
            good.replace(station.encode(), station.encode() + b"\xff", 1),
            b"{this is not json",
            b"",
        ]
        topic = rng.choice([telemetry, state])(station)
        return Message(topic, rng.choice(choices), "not_json")

    def too_deep(self, station: str) -> Message:
        rng = self.rng
        depth = rng.randint(220, 3000)
        document = self._batch(station)
        document["readings"] = RAW
        payload = rng.choice(
            [
                b"[" * depth,
                b'{"a":' * depth,
                dump(document, "[" * depth + "]" * depth),
            ]
        )
        return Message(rng.choice([telemetry, state])(station), payload, "too_deep")

    def sensor_claimed(self, _station: str) -> Message:
        claimed = self.rng.choice(list(self.valid.b.sensors))
        own = f"{self.claimant}.cover-{self.rng.randint(1, 99):02d}"
        document = self._birth(self.claimant) | {"status": "online"}  # a death claims nothing
        document["sensors"] = [
            sensor_doc(own, SensorKind.COVER),
            sensor_doc(claimed, SensorKind.COVER),
        ]
        self.rng.shuffle(document["sensors"])
        return Message(state(self.claimant), dump(document), "sensor_claimed")

    def bad_topic(self, station: str) -> Message:
        """Odd station ids Mosquitto passes on (it disconnects a client whose topic holds a
        control character, such as a trailing newline)."""
        odd = self.rng.choice(
            [f"{station} x", f"{station}!", f"{station}-ä", f"-{station}", f"{station}:1", "x" * 65]
        )
        topic = self.rng.choice([telemetry, state])(odd)
        return Message(topic, self._good_batch(station), "bad_topic")

    def undelivered(self, station: str) -> Message:
        topic = self.rng.choice(
            [
                f"citysense/v1/stations/{station}/other",
                f"citysense/v1/stations/{station}/telemetry/extra",
                f"citysense/v2/stations/{station}/telemetry",
                f"citysense/v1/stations/{station}",
                f"citysense/v1/{station}/telemetry",
            ]
        )
        return Message(topic, self._good_batch(station), None, delivered=False)

    # building blocks ----------------------------------------------------------------------

    def _batch(self, station: str) -> dict[str, Any]:
        rng = self.rng
        t = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**7))
        readings = []
        for i in range(rng.randint(1, 4)):
            kind = rng.choice(list(SensorKind))
            values = {PRIMARY_VALUE[kind]: rng.uniform(-1e6, 1e6)}
            values |= {n: rng.randint(-100, 100) for n in KIND_VALUES[kind] if rng.random() < 0.3}
            readings.append(
                {
                    "sensor_id": f"{station}.{kind.value}-{i:02d}",
                    "kind": kind.value,
                    "ts": iso(t + timedelta(milliseconds=100 * i)),
                    "values": values,
                }
            )
        return {
            "v": 1,
            "station_id": station,
            "boot_epoch": rng.randint(0, 4102444799),
            "seq": rng.randint(0, 2**64 - 1),
            "sent_at": iso(t + timedelta(seconds=1)),
            "readings": readings,
        }

    def _good_batch(self, station: str) -> bytes:
        return dump(self._batch(station))

    def _birth(self, station: str) -> dict[str, Any]:
        return {
            "v": 1,
            "station_id": station,
            "status": self.rng.choice(["online", "offline"]),
            "boot_epoch": self.rng.randint(0, 4102444799),
            "ts": iso(datetime(2026, 7, 1, tzinfo=UTC)),
            "sensors": [sensor_doc(f"{station}.cover-01", SensorKind.COVER)],
        }

    @staticmethod
    def _values(document: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = document["readings"][-1]["values"]
        return values

    @staticmethod
    def _primary(document: dict[str, Any]) -> str:
        return PRIMARY_VALUE[SensorKind(document["readings"][-1]["kind"])]

    def _batch_fault(
        self, station: str, reason: str, fault: Callable[[dict[str, Any]], object]
    ) -> Message:
        document = self._batch(station)
        fault(document)
        return Message(telemetry(station), dump(document), reason)

    def _birth_fault(
        self, station: str, reason: str, fault: Callable[[dict[str, Any]], object]
    ) -> Message:
        document = self._birth(station)
        fault(document)
        return Message(state(station), dump(document), reason)


def traffic(prefix: str, valid: Valid) -> list[Message]:
    """Births first, then the valid batches with the malformed messages spread between them;
    a valid batch comes last."""
    poison = Poison(random.Random(SEED), prefix, valid)
    specials = poison.specials()
    malformed = specials + [poison.draw() for _ in range(MALFORMED - len(specials))]
    batches = list(valid.batches())
    per_batch = -(-len(malformed) // len(batches))
    messages = valid.births()
    for i, sent in enumerate(batches):
        messages += malformed[i * per_batch : (i + 1) * per_batch]
        messages.append(sent)
    return messages


# -- the node, the broker and the store, from the test's side -------------------------------


class Metrics:
    def __init__(self, text: str) -> None:
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and labels.items() <= have.items()
        )

    def by(self, name: str, label: str) -> Counter[str]:
        return Counter(
            {have[label]: int(value) for sample, have, value in self.samples if sample == name}
        )


@dataclass
class Client:
    http: httpx.AsyncClient
    node: Node

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def metrics(self) -> Metrics:
        response = await self.http.get("/metrics")
        response.raise_for_status()
        return Metrics(response.text)

    async def health(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get("/api/v1/health")).json()
        return body

    async def until(self, check: Callable[[], Any], within: float = 30.0) -> Any:
        try:
            async with asyncio.timeout(within):
                while not (result := await check()):  # noqa: ASYNC110 (polls the HTTP API)
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"{check.__name__} not true after {within}s") from None
        return result

    async def settled(self) -> Metrics:
        """Metrics once the broker delivered what it had (retained messages of other tests):
        everything received is acknowledged and nothing moved for half a second."""
        previous: float | None = None

        async def still() -> Metrics | None:
            nonlocal previous
            metrics = await self.metrics()
            acked = metrics.value("citysense_ingest_acknowledged_total")
            moved, previous = acked != previous, acked
            return None if moved or metrics.value("citysense_ingest_in_flight") else metrics

        async def stable() -> Metrics | None:
            await asyncio.sleep(0.5)
            return await still()

        metrics: Metrics = await self.until(stable)
        return metrics

    def dead_letters(self) -> JsonlDeadLetters:
        letters = self.node.pipeline.dead_letters
        assert isinstance(letters, JsonlDeadLetters)
        return letters


@pytest.fixture
def node_client(
    mosquitto: MosquittoBroker, victoria: VictoriaMetrics
) -> Callable[[Path], AbstractAsyncContextManager[Client]]:
    """Starts a node on a data dir (the same dir again: a restart) and waits until it is
    subscribed."""

    @asynccontextmanager
    async def start(data_dir: Path) -> AsyncIterator[Client]:
        async with (
            serving_node(
                mosquitto,
                data_dir,
                rules_path=QUICK_RULES,
                allowed_lateness_s=0.5,
                victoria_url=victoria.url,
            ) as node,
            await signed_in_client(node, timeout=10) as http,
        ):
            client = Client(http, node)

            async def connected() -> bool:
                try:
                    return bool((await client.health())["mqtt_connected"])
                except httpx.TransportError:
                    return False

            await client.until(connected)
            yield client

    return start


def publish(broker: MosquittoBroker, messages: Sequence[Message]) -> None:
    """Publish at QoS 1 from one client, in order; returns once the broker has them all."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"poison-{uuid.uuid4()}")
    client.max_inflight_messages_set(100)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        sent = [client.publish(m.topic, m.payload, qos=1, retain=m.retain) for m in messages]
        for info in sent:
            info.wait_for_publish(timeout=60)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def points(victoria: VictoriaMetrics, station_id: str) -> tuple[int, list[float]]:
    """How many reading values of a station are stored, and the seqs of its stored batches."""
    readings, seqs = 0, []
    for series in victoria.export(f'{{station="{station_id}"}}'):
        name = series["metric"]["__name__"]  # type: ignore[index]
        values: list[float] = series["values"]  # type: ignore[assignment]
        if name == "citysense_batch_seq":
            seqs += values
        elif not name.startswith("citysense_"):
            readings += len(values)
    return readings, sorted(seqs)


async def stored(
    victoria: VictoriaMetrics, station_id: str, expected: tuple[int, Sequence[float]]
) -> tuple[int, list[float]]:
    """``points`` once it equals ``expected`` or after 10 s (VictoriaMetrics answers a write
    a moment before the points can be read back)."""
    for _ in range(100):
        found = await asyncio.to_thread(points, victoria, station_id)
        if found == expected:
            break
        await asyncio.sleep(0.1)
    return found


@pytest.fixture
def retained(mosquitto: MosquittoBroker) -> Iterator[list[str]]:
    """Topics the test retains on; cleared afterwards, so other tests do not get them."""
    topics: list[str] = []
    yield topics
    publish(mosquitto, [Message(topic, b"", None, retain=True) for topic in topics])


# -- the tests --------------------------------------------------------------------------------


async def test_poison_is_counted_and_dead_lettered_while_valid_traffic_flows(
    mosquitto: MosquittoBroker,
    victoria: VictoriaMetrics,
    node_client: Callable[[Path], AbstractAsyncContextManager[Client]],
    retained: list[str],
    tmp_path: Path,
) -> None:
    prefix = f"pz{uuid.uuid4().hex[:6]}"
    valid = Valid.build(prefix)
    messages = traffic(prefix, valid)
    retained += [m.topic for m in messages if m.retain]
    delivered = [m for m in messages if m.delivered]
    malformed = [m for m in delivered if m.reason is not None]
    assert len([m for m in messages if m.reason or not m.delivered]) == MALFORMED
    assert messages[-1].reason is None

    async with node_client(tmp_path) as client:
        before = await client.settled()
        letters_before = len(client.dead_letters().letters())
        await asyncio.to_thread(publish, mosquitto, messages)
        acked = before.value("citysense_ingest_acknowledged_total") + len(delivered)

        async def drained() -> Metrics | None:
            metrics = await client.metrics()
            done = metrics.value("citysense_ingest_acknowledged_total") >= acked
            return metrics if done else None

        after = await client.until(drained, within=60)

        health = await client.health()
        assert health["mqtt_connected"] is True, health
        rejected = after.by("citysense_ingest_rejected_total", "reason")
        rejected.subtract(before.by("citysense_ingest_rejected_total", "reason"))
        assert +rejected == Counter(m.reason for m in malformed)
        assert after.value("citysense_ingest_stalled") == 0

        letters = client.dead_letters().letters()[letters_before:]
        assert Counter((x.topic, x.payload, x.reason) for x in letters) == Counter(
            (m.topic, m.payload, m.reason) for m in malformed
        )
        page = await client.get("/api/v1/rejects", limit=1)
        assert page["total"] == letters_before + len(malformed)

        for station in (valid.a, valid.b):
            expected = (valid.points(station), list(range(VALID_BATCHES)))
            assert await stored(victoria, station.station_id, expected) == expected
        cases = await client.get("/api/v1/cases")
        assert cases["total"] == 1, cases
        (case,) = cases["items"]
        assert (case["sensor_id"], case["status"]) == (valid.cover, "cleared")

    async with node_client(tmp_path) as client:  # the retained poison is delivered again
        deep = next(m for m in messages if m.retain and m.reason)

        async def counted_again() -> bool:
            metrics = await client.metrics()
            return metrics.value("citysense_ingest_rejected_total", reason="too_deep") >= 1

        await client.until(counted_again)
        await client.settled()
        health = await client.health()
        assert health["mqtt_connected"] is True, health
        again = client.dead_letters().letters()[letters_before + len(malformed) :]
        mine = [x for x in again if x.topic.startswith(f"citysense/v1/stations/{prefix}")]
        assert [(x.topic, x.payload, x.reason) for x in mine] == [
            (deep.topic, deep.payload, "too_deep")
        ]
        assert (await client.get("/api/v1/cases"))["total"] == 1
        expected = (valid.points(valid.a), list(range(VALID_BATCHES)))
        assert await asyncio.to_thread(points, victoria, valid.a.station_id) == expected


async def test_unwritable_dead_letters_stall_ingest_until_they_can_be_written(
    mosquitto: MosquittoBroker,
    victoria: VictoriaMetrics,
    node_client: Callable[[Path], AbstractAsyncContextManager[Client]],
    tmp_path: Path,
) -> None:
    station_id = f"pz{uuid.uuid4().hex[:6]}-c"
    station = Station(station_id, {f"{station_id}.cover-01": SensorKind.COVER})
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    batches = [dump(station.batch(seq, base, 1.0)) for seq in range(3)]
    poison = b"{this is not json"
    topic = telemetry(station.station_id)
    blocker = tmp_path / "dead_letters.jsonl"
    blocker.mkdir()  # the dead-letter file cannot be opened, even by root (chmod would not do)

    async with node_client(tmp_path) as client:
        before = await client.settled()
        acked = before.value("citysense_ingest_acknowledged_total")
        messages = [Message(topic, poison, "not_json")] + [Message(topic, b, None) for b in batches]
        await asyncio.to_thread(publish, mosquitto, messages)

        async def stalled() -> bool:
            metrics = await client.metrics()
            return metrics.value("citysense_ingest_stalled", dependency="dead_letters") == 1

        await client.until(stalled)
        await asyncio.sleep(1.0)
        assert await stalled()
        metrics = await client.metrics()
        assert metrics.value("citysense_ingest_acknowledged_total") == acked
        assert (await client.health())["mqtt_connected"] is True
        assert await asyncio.to_thread(points, victoria, station.station_id) == (0, [])

        blocker.rmdir()

        async def flowing() -> Metrics | None:
            metrics = await client.metrics()
            done = metrics.value("citysense_ingest_acknowledged_total") >= acked + 4
            return metrics if done else None

        after = await client.until(flowing)
        assert after.value("citysense_ingest_stalled") == 0
        page = await client.get("/api/v1/rejects", station_id=station.station_id)
        assert page["total"] == 1
        (letter,) = page["items"]
        assert (letter["reason"], base64.b64decode(letter["payload"])) == ("not_json", poison)
        assert await stored(victoria, station.station_id, (15, [0, 1, 2])) == (15, [0, 1, 2])


# -- contract gaps found while writing the above, fixed since ----------------------------------


def test_a_number_is_not_a_time() -> None:
    """docs/contract.md: times are RFC 3339 strings, and a number is never coerced."""
    document = Station("st-1", {"st-1.cover-01": SensorKind.COVER}).batch(
        0, datetime(2026, 7, 1, tzinfo=UTC), 1.0
    )
    document["readings"][0]["ts"] = 1782892800  # 2026-07-01T08:00:00Z in Unix seconds
    with pytest.raises(PayloadError) as refused:
        decode_telemetry(StationTopic("st-1", Channel.TELEMETRY), dump(document))
    assert refused.value.reason == "invalid"


async def test_a_station_cannot_report_a_sensor_a_nested_station_owns() -> None:
    """Station ``st-b`` reports ``st-b.1.cover-01``, which station ``st-b.1`` owns: the prefix
    check of the codec passes it, and nothing after it looks at the owner."""
    engine = RuleEngine(load_rules(QUICK_RULES), clock=ClockPolicy(allowed_lateness=0.5))
    alerts, letters, sink = MemoryAlerts(), MemoryDeadLetters(), MemorySink()
    pipeline = IngestPipeline(engine=engine, alerts=alerts, dead_letters=letters, sinks=[sink])
    owner, other, sensor = "st-b.1", "st-b", "st-b.1.cover-01"
    await pipeline.handle(state(owner), encode(birth(owner, [cover_info(sensor)])))
    readings = [tilt(s / 2, 75.0, sensor) for s in range(20)]
    await pipeline.handle(telemetry(other), encode(batch(readings, station_id=other)))
    assert [reason for *_, reason, _ in letters.letters] == ["foreign_sensor"]
    assert (sink.batches, alerts.alerts) == ([], [])
