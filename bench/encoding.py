"""How to encode a telemetry batch on the load generator's hot path, measured three ways.

- ``pydantic``: build ``TelemetryBatch`` and its ``Reading`` models, ``protocol.encode`` them;
- ``json_dumps``: ``json.dumps`` a plain dict per batch (the baseline);
- ``fragments``: what ``bench.loadgen.StationStream`` does: reading fragments json-encoded
  once per sensor, spliced with the timestamps and the header.

Every variant's output must decode with ``protocol.decode_telemetry``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench.loadgen import READING_SPACING_US, SENSORS_PER_STATION, StationStream
from bench.report import Measurement, compared, per_second
from protocol import Reading, StationTopic, TelemetryBatch, decode_telemetry, encode

Encoder = Callable[[int, int], bytes]
"""(seq, epoch microseconds) → one encoded batch."""
STATION = "lg-0001"


def _sensors() -> list[tuple[str, str, dict[str, float]]]:
    """The sensors of a load-generator station and a reading of each, as plain data."""
    template = json.loads(StationStream(STATION, 1, len(_layout())).next_payload(0))
    return [(r["sensor_id"], r["kind"], r["values"]) for r in template["readings"]]


def _layout() -> list[str]:
    return [kind.value for kind, count in SENSORS_PER_STATION for _ in range(count)]


def pydantic_encoder(batch: int) -> Encoder:
    sensors = _sensors()

    def encode_batch(seq: int, now_us: int) -> bytes:
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)
        step = timedelta(microseconds=READING_SPACING_US)
        readings = [
            Reading(sensor_id=sid, kind=kind, ts=start + i * step, values=values)
            for i, (sid, kind, values) in ((i, sensors[i % len(sensors)]) for i in range(batch))
        ]
        return encode(
            TelemetryBatch(
                station_id=STATION, boot_epoch=1, seq=seq, sent_at=start, readings=readings
            )
        )

    return encode_batch


def json_dumps_encoder(batch: int) -> Encoder:
    sensors = _sensors()

    def iso(epoch_us: int) -> str:
        return datetime.fromtimestamp(epoch_us / 1e6, UTC).isoformat()

    def encode_batch(seq: int, now_us: int) -> bytes:
        readings = []
        for i in range(batch):
            sid, kind, values = sensors[i % len(sensors)]
            ts = iso(now_us + i * READING_SPACING_US)
            readings.append({"sensor_id": sid, "kind": kind, "ts": ts, "values": values})
        document = {"v": 1, "station_id": STATION, "boot_epoch": 1, "seq": seq}
        document |= {"sent_at": iso(now_us), "readings": readings}
        return json.dumps(document, separators=(",", ":")).encode()

    return encode_batch


def fragments_encoder(batch: int) -> Encoder:
    stream = StationStream(STATION, 1, batch)

    def encode_batch(seq: int, now_us: int) -> bytes:
        stream.seq = seq
        return stream.next_payload(now_us)

    return encode_batch


ENCODERS: dict[str, Callable[[int], Encoder]] = {
    "pydantic": pydantic_encoder,
    "json_dumps": json_dumps_encoder,
    "fragments": fragments_encoder,
}


def measure_encoder(name: str, *, batch: int, messages: int) -> Measurement:
    encode_batch = ENCODERS[name](batch)
    topic = StationTopic.parse(StationStream(STATION, 1, 1).topic)
    decode_telemetry(topic, encode_batch(0, time.time_ns() // 1000))  # refuses a wrong encoder
    payload_bytes, started = 0, time.perf_counter()
    for seq in range(messages):
        payload_bytes += len(encode_batch(seq, time.time_ns() // 1000))
    seconds = time.perf_counter() - started
    return Measurement(
        name=f"encode_{name}",
        title=f"encode TelemetryBatch: {name}",
        group="encoding",
        params={"encoder": name, "batch_size": batch, "messages": messages},
        figures={
            "readings_per_s": per_second(messages * batch, seconds),
            "messages_per_s": per_second(messages, seconds),
            "bytes_per_s": per_second(payload_bytes, seconds),
        },
    )


def measure_encoders(*, batch: int, messages: int) -> list[Measurement]:
    """Each encoder, with its rate as a ratio to ``json_dumps``."""
    measured = {name: measure_encoder(name, batch=batch, messages=messages) for name in ENCODERS}
    baseline = measured["json_dumps"]
    return [
        m if m is baseline else compared(m, baseline, ["readings_per_s"]) for m in measured.values()
    ]
