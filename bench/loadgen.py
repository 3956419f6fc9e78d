"""Load generator for benchmarks: many simulated stations publish telemetry at a target rate.

    python -m bench.loadgen --host 127.0.0.1 --port 1883 --stations 100 --rate 20000 \\
        --batch 50 --qos 1 --processes 2 --duration 10

Stations ``lg-0001`` … each have their own boot epoch, count ``seq`` from 0 and send
``TelemetryBatch`` payloads of ``batch`` readings (cover, pressure and pole sensors with plausible
values) on their own telemetry topic. The stations are split over ``processes`` OS processes
(``spawn``-safe); each owns one MQTT connection and paces its share with a token bucket on the
monotonic clock. The result is what was achieved, not what was asked for: ``LoadStats``.

The hot path was chosen by measurement (``python -m bench``, docs/benchmarks.md): paho-mqtt driven
by hand in one thread, and payloads spliced from fragments json-encoded once per sensor.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.synchronize import Event
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from protocol import MAX_READINGS_PER_BATCH, Channel, SensorKind, StationTopic

SENSORS_PER_STATION = ((SensorKind.COVER, 4), (SensorKind.PRESSURE, 1), (SensorKind.POLE, 2))
VALUE_VARIANTS = 64
READING_SPACING_US = 100
"""Device-clock step between a station's consecutive readings: every sensor's ``ts`` increases."""
WINDOW = 1000
"""Messages a connection may have outstanding (QoS 1: unacknowledged; QoS 0: unwritten)."""
PUMP_EVERY = 32
BURST_S = 0.05
"""A paced connection that fell behind catches up by at most this much of its rate at once."""
MAX_DURATION_S = 3600.0
"""The time bound of a run bounded only by its total of readings."""
CONNECT_TIMEOUT_S = START_TIMEOUT_S = FLUSH_TIMEOUT_S = 10.0
_TS = "\x00ts\x00"


class LoadError(RuntimeError):
    """The load could not be generated (no broker, a worker died)."""


def plausible_values(kind: SensorKind, rng: random.Random) -> dict[str, float]:
    """Values a healthy sensor of ``kind`` reads (see the domain brief)."""
    battery = round(rng.uniform(3.45, 3.65), 3)
    if kind is SensorKind.COVER:
        return {
            "tilt_deg": round(abs(rng.gauss(0.0, 0.3)), 3),
            "water_level_m": round(rng.uniform(0.2, 0.6), 3),
            "battery_v": battery,
        }
    if kind is SensorKind.PRESSURE:
        return {"pressure_mpa": round(rng.gauss(0.32, 0.01), 4), "battery_v": battery}
    return {
        "tilt_deg": round(0.3 + rng.gauss(0.0, 0.05), 3),
        "vibration_g": round(rng.random() / 50, 4),
    }


class Rfc3339:
    """UTC timestamps with microseconds, the date-time part cached per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second, self._prefix = -1, b""

    def __call__(self, epoch_us: int) -> bytes:
        second, micro = divmod(epoch_us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%06dZ" % (self._prefix, micro)


class Stream(Protocol):
    """What a ``SharePublisher`` publishes: a topic and a payload per message."""

    station_id: str
    topic: str
    batch_size: int

    def next_payload(self, now_us: int) -> bytes: ...


class StationStream:
    """One simulated station: its identity, sensors and the batches it sends, seq from 0.

    Each reading is a fragment json-encoded once, around its timestamp; a batch splices
    fragments, timestamps and the header together.
    """

    def __init__(
        self,
        station_id: str,
        boot_epoch: int,
        batch_size: int,
        seed: int = 0,
        variants: int = VALUE_VARIANTS,
    ) -> None:
        if not 1 <= batch_size <= MAX_READINGS_PER_BATCH:
            raise ValueError(f"batch size {batch_size} outside 1..{MAX_READINGS_PER_BATCH}")
        self.station_id, self.boot_epoch, self.batch_size = station_id, boot_epoch, batch_size
        self.topic = str(StationTopic(station_id, Channel.TELEMETRY))
        self.seq = 0
        self._head = _json_around({"v": 1, "station_id": station_id, "boot_epoch": boot_epoch})
        rng = random.Random(f"{seed}/{station_id}")
        self._readings = [
            _reading_fragments(f"{station_id}.{kind.value}-{n:02d}", kind, rng, variants)
            for kind, count in SENSORS_PER_STATION
            for n in range(1, count + 1)
        ]
        self._clock_us = 0
        self._rfc3339 = Rfc3339()

    def next_payload(self, now_us: int) -> bytes:
        """The next batch: readings sampled up to ``now_us`` (or after the last one sent)."""
        spacing, size = READING_SPACING_US, self.batch_size
        start = max(now_us - (size - 1) * spacing, self._clock_us)
        self._clock_us = start + size * spacing
        seq, sensors, stamp = self.seq, self._readings, self._rfc3339
        sent_at = stamp(max(now_us, self._clock_us - spacing))
        parts = [self._head, b',"seq":%d,"sent_at":"%s","readings":[' % (seq, sent_at)]
        first = seq * size
        for i in range(size):
            prefix, values = sensors[(first + i) % len(sensors)]
            parts += (prefix, stamp(start + i * spacing), values[(seq + i) % len(values)], b",")
        parts[-1] = b"]}"
        self.seq = seq + 1
        return b"".join(parts)


def _json_around(document: dict[str, Any]) -> bytes:
    """``document`` as compact JSON without its closing brace, ready for more members."""
    return json.dumps(document, separators=(",", ":")).encode()[:-1]


def _reading_fragments(
    sensor_id: str, kind: SensorKind, rng: random.Random, count: int = VALUE_VARIANTS
) -> tuple[bytes, list[bytes]]:
    """The JSON of a reading before its timestamp, and ``count`` variants of what follows it."""
    marker, prefix, variants = json.dumps(_TS)[1:-1], "", []
    for _ in range(count):
        values = plausible_values(kind, rng)
        reading = {"sensor_id": sensor_id, "kind": kind.value, "ts": _TS, "values": values}
        prefix, suffix = json.dumps(reading, separators=(",", ":")).split(marker)
        variants.append(suffix.encode())
    return prefix.encode(), variants


@dataclass(frozen=True)
class LoadSpec:
    """What to generate. ``rate`` is readings/s over all stations; ``None`` is as fast as possible.
    The run stops after ``duration`` seconds or ``total_readings`` (rounded up to whole batches),
    whichever comes first; without a duration it still stops after ``MAX_DURATION_S``.
    Stations are ``<station_prefix>-0001`` …, split over the processes in contiguous shares."""

    host: str
    port: int
    stations: int = 100
    rate: float | None = 20_000.0
    batch: int = 50
    qos: int = 1
    processes: int = 2
    duration: float | None = 10.0
    total_readings: int | None = None
    seed: int = 0
    station_prefix: str = "lg"
    start_method: Literal["spawn", "forkserver"] = "spawn"

    def __post_init__(self) -> None:
        if self.duration is None and self.total_readings is None:
            raise ValueError("bound the run with a duration or a total of readings")
        if not 1 <= self.processes <= self.stations:
            raise ValueError(f"{self.processes} processes for {self.stations} stations")
        if self.qos not in (0, 1) or (self.rate is not None and self.rate <= 0):
            raise ValueError(f"bad qos {self.qos} or rate {self.rate}")
        StationStream(station_id(0, self.station_prefix), 0, self.batch)  # validates them

    @property
    def time_limit(self) -> float:
        return self.duration if self.duration is not None else MAX_DURATION_S


@dataclass(frozen=True)
class LoadStats:
    target_readings_per_s: float | None
    achieved_readings_per_s: float
    messages_per_s: float
    readings: int
    messages: int
    bytes: int
    seconds: float
    processes: int
    qos: int
    batch_size: int
    errors: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True)
class ShareStats:
    """What one process achieved: messages completed (QoS 1 acknowledged, QoS 0 written)."""

    messages: int
    bytes: int
    errors: int
    started: float
    finished: float


class TokenBucket:
    """``rate`` tokens/s, at most ``burst`` saved up; time is passed in (monotonic seconds)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, max(1.0, burst)
        self._tokens, self._last = 1.0, now

    def delay(self, now: float) -> float:
        """0 and one token taken when one is available, else the seconds until there is one."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0 - 1e-9:  # waits computed here refill to 1.0 up to rounding
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate


def station_id(index: int, prefix: str = "lg") -> str:
    return f"{prefix}-{index + 1:04d}"


def share_of(spec: LoadSpec, worker: int) -> tuple[range, float | None, int | None]:
    """Station indexes, readings/s and message bound of one worker process."""
    n, p = spec.stations, spec.processes
    stations = range(worker * n // p, (worker + 1) * n // p)
    rate = None if spec.rate is None else spec.rate * len(stations) / n
    messages = None
    if spec.total_readings is not None:
        total = -(-spec.total_readings // spec.batch)
        messages = total * stations.stop // n - total * stations.start // n
    return stations, rate, messages


class SharePublisher:
    """One process's stations over one paho connection, driven by hand in this thread.

    ``_pending`` maps the message id of every outstanding publish to its size; a QoS 0 message
    written inside ``publish()`` completes before its id is known, so it goes to ``_early``.
    """

    def __init__(self, host: str, port: int, qos: int, streams: Sequence[Stream]) -> None:
        self.host, self.port, self.qos, self.streams = host, port, qos, streams
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"loadgen-{os.getpid()}-{streams[0].station_id}",
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(WINDOW)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._pending: dict[int, int] = {}
        self._early: set[int] = set()
        self.connected = self.lost = False
        self.completed = self.bytes = self.errors = 0

    def _on_connect(self, _c: object, _u: object, _f: object, code: Any, _p: object) -> None:
        self.connected = not code.is_failure

    def _on_publish(self, _c: object, _u: object, mid: int, code: Any, _p: object) -> None:
        size = self._pending.pop(mid, None)
        if code.is_failure:
            self.errors += 1
        elif size is None:
            self._early.add(mid)
        else:
            self.completed, self.bytes = self.completed + 1, self.bytes + size

    def connect(self) -> None:
        self.client.connect(self.host, self.port, keepalive=60)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self.connected:
            if (
                time.monotonic() > deadline
                or self.client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS
            ):
                raise LoadError(f"no CONNACK from {self.host}:{self.port}")

    def _pump(self, timeout: float) -> None:
        """Let paho read acknowledgements and write what is queued, waiting up to ``timeout``."""
        if self.client.loop(max(0.0, timeout)) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.lost = True

    def _publish(self, stream: Stream) -> None:
        payload = stream.next_payload(time.time_ns() // 1000)
        info = self.client.publish(stream.topic, payload, self.qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.errors += 1
            self.lost = info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
        elif info.mid in self._early:
            self._early.discard(info.mid)
            self.completed, self.bytes = self.completed + 1, self.bytes + len(payload)
        else:
            self._pending[info.mid] = len(payload)

    def run(self, readings_per_s: float | None, messages: int | None, seconds: float) -> ShareStats:
        started = time.monotonic()
        deadline, limit = started + seconds, messages if messages is not None else 2**62
        bucket = None
        if readings_per_s is not None:
            per_s = readings_per_s / self.streams[0].batch_size
            bucket = TokenBucket(per_s, per_s * BURST_S, started)
        sent, streams = 0, self.streams
        while sent < limit and not self.lost and (now := time.monotonic()) < deadline:
            if len(self._pending) >= WINDOW:
                self._pump(min(0.05, deadline - now))
                continue
            wait = bucket.delay(now) if bucket is not None else 0.0
            if wait > 0:
                self._pump(min(wait, deadline - now))
                continue
            self._publish(streams[sent % len(streams)])
            sent += 1
            if sent % PUMP_EVERY == 0:
                self._pump(0.0)
        self._flush()
        return ShareStats(self.completed, self.bytes, self.errors, started, time.monotonic())

    def _flush(self) -> None:
        """Wait (bounded) for what is outstanding; what never completes is an error."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while self._pending and not self.lost and time.monotonic() < deadline:
            self._pump(0.05)
        self.errors += len(self._pending)
        self._pending.clear()

    def close(self) -> None:
        self.client.disconnect()
        for _ in range(20):
            if self.client.loop(0.01) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break


def _worker(spec: LoadSpec, worker: int, boot_base: int, start: Event, reports: Any) -> None:
    """One OS process: its share of the stations, one connection, one report."""
    indexes, readings_per_s, messages = share_of(spec, worker)
    # above 100 stations a process builds fewer value variants per sensor (at least 2): 64 for
    # each of 5,000 stations took ~45 s to build on a slow machine
    variants = max(2, min(VALUE_VARIANTS, VALUE_VARIANTS * 100 // max(len(indexes), 1)))
    streams = [
        StationStream(
            station_id(i, spec.station_prefix), boot_base + i, spec.batch, spec.seed, variants
        )
        for i in indexes
    ]
    publisher = SharePublisher(spec.host, spec.port, spec.qos, streams)
    try:
        publisher.connect()
    except (OSError, LoadError) as exc:
        reports.put((worker, f"cannot connect to {spec.host}:{spec.port}: {exc!r}"))
        return
    reports.put((worker, "ready"))
    if start.wait(_start_timeout(spec)):
        reports.put((worker, publisher.run(readings_per_s, messages, spec.time_limit)))
    publisher.close()


def _start_timeout(spec: LoadSpec) -> float:
    """How long a process may take to start: more with thousands of stations to build."""
    return START_TIMEOUT_S + spec.stations / 500


def _next_report(reports: Any, workers: Sequence[Any], deadline: float) -> tuple[int, Any]:
    while time.monotonic() < deadline:
        try:
            report: tuple[int, Any] = reports.get(timeout=0.5)
        except queue.Empty:
            dead = [w.name for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise LoadError(f"load generator processes died: {', '.join(dead)}") from None
            continue
        if isinstance(report[1], str) and report[1] != "ready":
            raise LoadError(report[1])
        return report
    raise LoadError("load generator processes did not report in time")


def run_load(spec: LoadSpec) -> LoadStats:
    """Generate the load of ``spec`` from its processes; returns what was achieved."""
    ctx: SpawnContext | ForkServerContext = (
        mp.get_context("forkserver")
        if spec.start_method == "forkserver"
        else mp.get_context("spawn")
    )
    start, reports = ctx.Event(), ctx.Queue()
    boot_base = time.time_ns() // 1_000_000_000  # Unix seconds, as the contract bounds it
    workers = [
        ctx.Process(target=_worker, args=(spec, w, boot_base, start, reports), name=f"loadgen-{w}")
        for w in range(spec.processes)
    ]
    for process in workers:
        process.start()
    try:
        for _ in workers:
            _next_report(reports, workers, time.monotonic() + _start_timeout(spec))
        start.set()
        deadline = time.monotonic() + spec.time_limit + FLUSH_TIMEOUT_S + _start_timeout(spec)
        shares = [_next_report(reports, workers, deadline)[1] for _ in workers]
    except BaseException:
        for process in workers:
            process.terminate()  # the others wait for a start that will not come
        raise
    finally:
        for process in workers:
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join()
    return combine(spec, shares)


def combine(spec: LoadSpec, shares: Sequence[ShareStats]) -> LoadStats:
    """One figure for the run: from the first process starting to the last one done."""
    seconds = max(max(s.finished for s in shares) - min(s.started for s in shares), 1e-9)
    messages = sum(s.messages for s in shares)
    readings = messages * spec.batch
    return LoadStats(
        target_readings_per_s=spec.rate,
        achieved_readings_per_s=readings / seconds,
        messages_per_s=messages / seconds,
        readings=readings,
        messages=messages,
        bytes=sum(s.bytes for s in shares),
        seconds=seconds,
        processes=spec.processes,
        qos=spec.qos,
        batch_size=spec.batch,
        errors=sum(s.errors for s in shares),
    )


def _rate(text: str) -> float | None:
    return None if text == "max" else float(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--rate", type=_rate, default=20_000.0, help="readings/s, or 'max'")
    parser.add_argument("--batch", type=int, default=50, help="readings per message")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds; 0: no time bound")
    parser.add_argument("--total-readings", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--station-prefix", default="lg", help="station ids <prefix>-0001 …")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        host=args.host,
        port=args.port,
        stations=args.stations,
        rate=args.rate,
        batch=args.batch,
        qos=args.qos,
        processes=args.processes,
        duration=args.duration or None,
        total_readings=args.total_readings,
        seed=args.seed,
        station_prefix=args.station_prefix,
    )
    try:
        print(run_load(spec).to_json())
    except LoadError as exc:
        parser.exit(1, f"loadgen: {exc}\n")


if __name__ == "__main__":
    main()
