"""Replay a recording into a broker with its original timing, scaled by a speed factor.

Record *i* is published at ``start + (t_i - t_0) / speed`` on the monotonic clock, so waits never
add up to drift; a record whose time is earlier than its predecessor's (a capture can
interleave) goes out right after it. Publishing does not wait for each PUBACK: up to ``window``
messages are unconfirmed at a time, and ``replay`` returns once the broker confirmed them all.

The hot path drives paho-mqtt directly from the event loop's socket callbacks (as aiomqtt does
inside). Against a local Mosquitto it publishes 20,000-35,000 QoS 1 messages/s where aiomqtt
with the same window of concurrent publishes manages 11,000-12,000: aiomqtt needs a task, a
``wait_for`` and an event per message. paho's own in-flight limit is switched off because it
rescans every unconfirmed message on each PUBACK; the window here does that job in O(1).

MQTT keeps order only within a QoS level (Mosquitto forwards a QoS 2 message after PUBREL), so
subscribers see each level's records in file order. The recording is read in 1 MiB chunks on
the loop's thread: a local read of that size is far below a scheduling tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import TypeAdapter, ValidationError

from protocol.models import SensorId, StationId
from protocol.topics import TOPIC_ROOT
from simulator.recording import Record, RecordingReader

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

MAX_SPEED: Final = 1000.0
LATE_AFTER_S: Final = 0.05
"""A record counts as late when it goes out this long after its scheduled time."""
PROGRESS_EVERY_S: Final = 0.1

Progress = Callable[[int, int], None]


class ReplayError(Exception):
    """The broker refused, dropped or stalled the replay."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    records: int
    bytes: int
    """Payload bytes published."""
    wall_seconds: float
    late_records: int
    """Records published more than ``LATE_AFTER_S`` after their scheduled time."""
    late_records_max_lag_s: float
    """The largest delay of any record behind its schedule (0 when as fast as possible)."""
    span_seconds: float
    """Publish-time span of the recording (latest record time minus the earliest)."""
    truncated_bytes: int
    """Size of a torn tail at the end of the recording, which was not replayed."""
    skipped: int = 0
    """Records the ``transform`` left out (a scoped run publishes only station topics)."""

    @property
    def messages_per_second(self) -> float:
        return self.records / self.wall_seconds if self.wall_seconds > 0 else 0.0


async def replay(
    path: str | os.PathLike[str],
    *,
    host: str,
    port: int,
    speed: float | None = 1.0,
    qos_override: int | None = None,
    progress: Progress | None = None,
    client_id: str | None = None,
    window: int = 1000,
    total_records: int | None = None,
    transform: Callable[[Record], Record | None] | None = None,
) -> ReplayStats:
    """Publish every record of ``path`` in file order; ``speed=None`` is as fast as possible.

    ``progress(done, total)`` is called about ten times a second and once at the end; the
    total comes from ``total_records`` when the caller knows it, else from a counting pass.
    ``transform`` turns each record into the one published, or None to leave it out (on its
    original schedule either way): ``RunPrefix.record`` renames a run's stations.

    Raises ``RecordingError`` for a file that is not a recording and ``ReplayError`` when the
    broker cannot be reached, refuses a message or drops the connection.
    """
    if speed is not None and not 0 < speed <= MAX_SPEED:
        raise ValueError(f"speed must be in (0, {MAX_SPEED:g}], not {speed}")
    if qos_override not in (None, 0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos_override}")
    total = 0
    if progress is not None:
        total = total_records if total_records is not None else _count(path)
    loop = asyncio.get_running_loop()
    pacer, tally = _Pacer(loop, speed), _Tally(loop, progress, total)
    client_id = client_id or f"citysense-replay-{uuid.uuid4().hex[:12]}"
    with RecordingReader(path) as reader:
        async with _Publisher(host, port, client_id, window) as publisher:
            pacer.start()
            for original in reader:
                await pacer.wait_for(original.t_ns)
                record = original if transform is None else transform(original)
                if record is None:
                    tally.skip()
                    continue
                qos = record.qos if qos_override is None else qos_override
                await publisher.publish(record.topic, record.payload, qos, record.retain)
                tally.add(record)
            await publisher.drain()
    tally.report()
    return ReplayStats(
        records=tally.records,
        bytes=tally.payload_bytes,
        wall_seconds=loop.time() - pacer.started_at,
        late_records=pacer.late_records,
        late_records_max_lag_s=pacer.max_lag_s,
        span_seconds=tally.span_seconds,
        truncated_bytes=reader.truncated_bytes,
        skipped=tally.skipped,
    )


class _Tally:
    """Counts what went out and calls ``progress`` about ten times a second."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, progress: Progress | None, total: int
    ) -> None:
        self._loop, self._progress, self._total = loop, progress, total
        self._last_report = loop.time()
        self.records = self.payload_bytes = self.skipped = 0
        self._earliest: int | None = None
        self._latest: int | None = None

    def skip(self) -> None:
        self.skipped += 1

    def add(self, record: Record) -> None:
        self.records += 1
        self.payload_bytes += len(record.payload)
        t_ns = record.t_ns
        self._earliest = t_ns if self._earliest is None else min(self._earliest, t_ns)
        self._latest = t_ns if self._latest is None else max(self._latest, t_ns)
        if self._progress is not None and self._loop.time() - self._last_report >= PROGRESS_EVERY_S:
            self.report()

    def report(self) -> None:
        if self._progress is not None:
            self._progress(self.records + self.skipped, self._total)
            self._last_report = self._loop.time()

    @property
    def span_seconds(self) -> float:
        if self._earliest is None or self._latest is None:
            return 0.0
        return (self._latest - self._earliest) / 1e9


def _count(path: str | os.PathLike[str]) -> int:
    reader = RecordingReader(path)
    for _ in reader:
        pass
    return reader.records_read


class _Pacer:
    """Sleeps until each record's due time on the loop's monotonic clock; tracks lateness."""

    def __init__(self, loop: asyncio.AbstractEventLoop, speed: float | None) -> None:
        self._loop, self._speed = loop, speed
        self.started_at = loop.time()
        self._first_t_ns: int | None = None
        self._due = 0.0
        self.late_records = 0
        self.max_lag_s = 0.0

    def start(self) -> None:
        self.started_at = self._loop.time()

    async def wait_for(self, t_ns: int) -> None:
        if self._speed is None:
            return
        if self._first_t_ns is None:
            self._first_t_ns = t_ns
        self._due = max(self._due, (t_ns - self._first_t_ns) / 1e9 / self._speed)
        due_at = self.started_at + self._due
        ahead = due_at - self._loop.time()
        if ahead > 0:
            await asyncio.sleep(ahead)
        lag = self._loop.time() - due_at
        self.max_lag_s = max(self.max_lag_s, lag)
        if lag > LATE_AFTER_S:
            self.late_records += 1


class _Publisher:
    """A paho-mqtt client run by the asyncio loop: ``publish`` waits only when the window is full.

    paho calls the socket callbacks below; the connect itself (blocking DNS and TCP) runs in
    the default executor, so the two that can fire there hop onto the loop thread-safely.
    """

    def __init__(self, host: str, port: int, client_id: str, window: int) -> None:
        self._host, self._port, self._window = host, port, max(1, window)
        self._loop = asyncio.get_running_loop()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.max_inflight_messages_set(0)  # our window bounds it; paho's scans per ack
        self._unconfirmed = 0
        self._changed = asyncio.Event()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._socket_open = False
        self._socket_closed = asyncio.Event()
        self._failure: ReplayError | None = None
        self._closing = False
        self._misc_task: asyncio.Task[None] | None = None
        self._install_callbacks()

    def _install_callbacks(self) -> None:
        client = self._client
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        client.on_socket_close = self._on_socket_close

    async def __aenter__(self) -> _Publisher:
        try:
            await self._connect()
        except BaseException:
            await self._shutdown()
            raise
        self._misc_task = asyncio.create_task(self._keep_alive(), name="replay-mqtt-keepalive")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._shutdown()

    async def _connect(self) -> None:
        try:
            await self._loop.run_in_executor(None, self._client.connect, self._host, self._port)
            async with asyncio.timeout(10):
                await self._connected
        except (OSError, TimeoutError) as exc:
            where = f"{self._host}:{self._port}"
            raise ReplayError(f"cannot connect to the broker at {where}: {exc}") from None

    async def _shutdown(self) -> None:
        """Say goodbye if a socket is open and wait (briefly) until paho has closed it."""
        self._closing = True
        if self._misc_task is not None:
            self._misc_task.cancel()
            await asyncio.wait([self._misc_task])
        if self._socket_open and not self._socket_closed.is_set():
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._socket_closed.wait()

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._raise_if_failed()
        try:
            info = self._client.publish(topic, payload, qos, retain)
        except ValueError as exc:
            raise ReplayError(f"cannot publish on {topic[:80]!r}: {exc}") from None
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ReplayError(f"publish on {topic!r} failed: {mqtt.error_string(info.rc)}")
        self._unconfirmed += 1
        if self._unconfirmed >= self._window:
            await self._wait_until_unconfirmed(self._window // 2)

    async def drain(self) -> None:
        """Return once the broker confirmed every message published so far."""
        await self._wait_until_unconfirmed(0)

    async def _wait_until_unconfirmed(self, limit: int, stall_s: float = 30.0) -> None:
        while self._unconfirmed > limit:
            self._raise_if_failed()
            self._changed.clear()
            try:
                async with asyncio.timeout(stall_s):
                    await self._changed.wait()
            except TimeoutError:
                raise ReplayError(
                    f"the broker confirmed nothing for {stall_s:g} s "
                    f"({self._unconfirmed} messages unconfirmed)"
                ) from None
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _keep_alive(self) -> None:
        """paho's housekeeping (PINGREQ, retries) once a second, as its own loop would."""
        while True:
            if self._client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1)

    def _guarded(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:  # paho raises socket errors from loop_read/loop_write
            self._fail(ReplayError(f"MQTT connection failed: {exc}"))

    def _fail(self, failure: ReplayError) -> None:
        if self._failure is None:
            self._failure = failure
        if not self._connected.done():
            self._connected.set_exception(failure)
        self._changed.set()

    def _on_connect(self, *args: object) -> None:
        reason = args[3]
        if isinstance(reason, ReasonCode) and reason.is_failure:
            self._fail(ReplayError(f"the broker refused the connection: {reason}"))
        elif not self._connected.done():
            self._connected.set_result(None)

    def _on_disconnect(self, *args: object) -> None:
        if not self._closing:
            self._fail(ReplayError(f"the broker closed the connection ({args[3]})"))

    def _on_publish(self, *_: object) -> None:
        self._unconfirmed -= 1
        self._changed.set()

    def _on_socket_open(self, client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        self._socket_open = True
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.call_soon_threadsafe(
            self._loop.add_reader, sock.fileno(), self._guarded, client.loop_read
        )

    def _on_socket_register_write(
        self, client: mqtt.Client, _userdata: object, sock: SocketLike
    ) -> None:
        self._loop.call_soon_threadsafe(
            self._loop.add_writer, sock.fileno(), self._guarded, client.loop_write
        )

    def _on_socket_unregister_write(
        self, _client: mqtt.Client, _userdata: object, sock: SocketLike
    ) -> None:
        self._loop.remove_writer(sock.fileno())

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, sock: SocketLike) -> None:
        fileno = sock.fileno()
        if fileno >= 0:
            self._loop.remove_reader(fileno)
            self._loop.remove_writer(fileno)
        self._socket_closed.set()


# --- A scoped run: the recording replayed under station ids of its own ---------------------

RUN_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$"
"""A run id: the prefix of every station and sensor id of the run is ``<run id>-``."""
_RUN_ID = re.compile(RUN_ID_PATTERN)
_SENSOR_ID: TypeAdapter[str] = TypeAdapter(SensorId)
_STATION_ID: TypeAdapter[str] = TypeAdapter(StationId)
_STATIONS_ROOT: Final = f"{TOPIC_ROOT}/stations/"
RUN_RECORD_VERSION: Final = 1


class RunScopeError(ValueError):
    """A run id that is not one, or an id the run's prefix would push past the protocol."""


@dataclass(frozen=True, slots=True)
class RunPrefix:
    """Renames everything that names a station, as ``<run id>-<original id>``.

    A sensor id is ``<station id>.<local id>``, so prefixing station and sensor ids alike keeps
    every sensor bound to its station (and a foreign sensor foreign). Renamed: the station level
    of a topic under ``citysense/v1/stations/``; in a JSON object payload its ``station_id`` and
    the ``sensor_id`` of each of its ``readings`` (telemetry) and ``sensors`` (a birth). A
    payload that is not a JSON object, or names nothing, goes out byte for byte (junk stays junk).
    """

    run_id: str

    def __post_init__(self) -> None:
        if not _RUN_ID.fullmatch(self.run_id):
            raise RunScopeError(
                f"run id {self.run_id!r} is not 1-24 letters, digits, '_' or '-' "
                "(starting with a letter or digit)"
            )

    @property
    def prefix(self) -> str:
        return f"{self.run_id}-"

    def station(self, station_id: str) -> str:
        return self._renamed(station_id, _STATION_ID, "station", 64)

    def sensor(self, sensor_id: str) -> str:
        return self._renamed(sensor_id, _SENSOR_ID, "sensor", 128)

    def _renamed(self, value: str, valid: TypeAdapter[str], what: str, limit: int) -> str:
        renamed = self.prefix + value
        if _is_valid(valid, value) and not _is_valid(valid, renamed):
            raise RunScopeError(
                f"{what} id {value!r} is too long for run id {self.run_id!r}: "
                f"{what} ids have at most {limit} characters"
            )
        return renamed  # an id that was invalid stays invalid: ingest refuses it as before

    def topic(self, topic: str) -> str | None:
        """The topic under the run's station id; None for a topic outside the stations (such as
        ingest's presence in a capture), which a scoped run does not publish."""
        if not topic.startswith(_STATIONS_ROOT):
            return None
        station, slash, rest = topic[len(_STATIONS_ROOT) :].partition("/")
        return f"{_STATIONS_ROOT}{self.station(station)}{slash}{rest}"

    def payload(self, payload: bytes) -> bytes:
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            return payload
        if not isinstance(document, dict) or not self._rename_in(document):
            return payload
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _rename_in(self, document: dict[str, Any]) -> bool:
        renamed = False
        if isinstance(document.get("station_id"), str):
            document["station_id"] = self.station(document["station_id"])
            renamed = True
        for key in ("readings", "sensors"):
            items = document.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("sensor_id"), str):
                    item["sensor_id"] = self.sensor(item["sensor_id"])
                    renamed = True
        return renamed

    def record(self, record: Record) -> Record | None:
        """The record as the run publishes it, or None when it is not published."""
        topic = self.topic(record.topic)
        if topic is None:
            return None
        return Record(record.t_ns, topic, self.payload(record.payload), record.qos, record.retain)


def _is_valid(adapter: TypeAdapter[str], value: str) -> bool:
    """Whether the id passes the protocol's own type (its pattern, as ingest checks it)."""
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def recorded_stations(topics: Iterable[str]) -> list[str]:
    """The station ids a recording's topics name (its summary's ``topics``), sorted."""
    return sorted(
        {
            topic[len(_STATIONS_ROOT) :].partition("/")[0]
            for topic in topics
            if topic.startswith(_STATIONS_ROOT)
        }
    )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What ``citysense replay --run-id`` did, written beside the recording before the first
    message goes out and again when the last is confirmed; ``citysense score --run-id`` reads
    it to score only this run's stations and the cases that arrived after it started."""

    run_id: str
    recording: str
    metadata: dict[str, Any]
    """The recording's header (a simulated run names its scenario and seed)."""
    broker: str
    speed: float | None
    started_at: datetime
    """Wall clock (UTC) just before the first message was published."""
    stations: dict[str, str]
    """Original station id -> the run's."""
    finished_at: datetime | None = None
    """None while the replay runs, or when it failed or was interrupted."""
    published: int = 0
    skipped: int = 0
    """Messages on topics outside the stations, not published in a scoped run."""

    @property
    def prefix(self) -> str:
        return RunPrefix(self.run_id).prefix

    def write(self, path: Path) -> None:
        document = {"version": RUN_RECORD_VERSION, **asdict(self)}
        for name in ("started_at", "finished_at"):
            value = document[name]
            document[name] = None if value is None else value.isoformat().replace("+00:00", "Z")
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        temporary.replace(path)

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("version") != RUN_RECORD_VERSION:
            raise ValueError(f"{path}: not a run record of version {RUN_RECORD_VERSION}")
        finished = document["finished_at"]
        return cls(
            run_id=str(document["run_id"]),
            recording=str(document["recording"]),
            metadata=dict(document["metadata"]),
            broker=str(document["broker"]),
            speed=document["speed"],
            started_at=_utc(document["started_at"]),
            stations={str(k): str(v) for k, v in document["stations"].items()},
            finished_at=None if finished is None else _utc(finished),
            published=int(document["published"]),
            skipped=int(document["skipped"]),
        )


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return value


def run_record_path(directory: Path, name: str, run_id: str) -> Path:
    """``<directory>/<name>.<run id>.run.json``: beside the recording ``<name>.csrec`` and its
    truth ``<name>.truth.json``, as ``citysense simulate`` writes them."""
    return directory / f"{name}.{run_id}.run.json"


async def retained_births(
    host: str, port: int, station_ids: Iterable[str], within_s: float = 10.0
) -> list[str]:
    """The stations among ``station_ids`` the broker holds a retained ``state`` for: a run id
    that was replayed into this broker before.

    Subscribes to their state topics and to a topic of its own, then publishes to that one:
    the broker sends the retained messages before it, so its arrival ends the wait."""
    marker = f"{TOPIC_ROOT}/replay-check/{uuid.uuid4().hex}"
    found: set[str] = set()
    topics = [(f"{_STATIONS_ROOT}{sid}/state", 0) for sid in station_ids]
    try:
        async with (
            asyncio.timeout(within_s),
            aiomqtt.Client(
                host, port, identifier=f"citysense-replay-check-{uuid.uuid4().hex[:8]}"
            ) as client,
        ):
            for start in range(0, len(topics), 100):
                await client.subscribe(topics[start : start + 100])
            await client.subscribe(marker)
            await client.publish(marker, b"", qos=0)
            async for message in client.messages:
                topic = str(message.topic)
                if topic == marker:
                    break
                if message.retain and message.payload:
                    found.add(topic[len(_STATIONS_ROOT) :].partition("/")[0])
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        raise ReplayError(f"cannot check the broker at {host}:{port} for the run: {exc}") from None
    return sorted(found)
