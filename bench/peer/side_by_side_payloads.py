"""Build citysense telemetry for the side-by-side throughput runs.

Run it with the citysense checkout's venv python (it imports the project's ``protocol`` package):

    python side_by_side_payloads.py OUT_DIR --batch 100 --seconds 200
    python side_by_side_payloads.py OUT_DIR --batch 1 --seconds 10

Model: ``--stations`` base stations, each with ``--sensors`` manhole-cover sensors sampled once
per second of device time for ``--seconds`` seconds. A station's readings are cut into
``TelemetryBatch`` messages of ``--batch`` readings in device-time order (second by second,
sensor by sensor), ``seq`` from 0 and consecutive per station. Tilt is healthy (|N(0, 0.3)|
degrees, always < 5) except for ``--above-fraction`` of the readings: incidents where one cover
reads 20-60 degrees for ``--above-run`` consecutive seconds, then healthy again, so the default
``cover-open`` rule (> 15 for 3 s, clear at <= 5) opens and clears one alert per incident.

Writes to OUT_DIR:
  births/<station>.json     retained StationState (online, the station's sensors), one line
  telemetry/<station>.jsonl one TelemetryBatch per line, seq order (for ``mosquitto_pub -l``)
  meta.json                 counts: stations, messages, readings, readings above 15, incidents

Births are built with the project's pydantic models; every telemetry line is checked with the
project's own ``protocol.decode_telemetry`` (the decoder ingest uses) before it is written.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocol import (
    Channel,
    SensorInfo,
    SensorKind,
    StationState,
    StationTopic,
    decode_state,
    decode_telemetry,
    encode,
)

COVER_CLASSES = [f"01{n:02d}" for n in range(1, 15)]  # GB/T 30428 0101-0114: covers
THRESHOLD = 15.0


def station_id(n: int, prefix: str) -> str:
    return f"{prefix}-{n:04d}"


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_birth(sid: str, n: int, sensors: int, boot_epoch: int, t0: datetime) -> StationState:
    rng = random.Random(f"birth/{sid}")
    infos = []
    for i in range(1, sensors + 1):
        cls = rng.choice(COVER_CLASSES)
        infos.append(
            SensorInfo(
                sensor_id=f"{sid}.cover-{i:03d}",
                kind=SensorKind.COVER,
                class_code=cls,
                component_id=f"410105{cls}{n:03d}{i:03d}",
                grid_code=f"4101050010{n % 100:02d}{i % 100:02d}",
                lon=round(113.60 + rng.random() * 0.15, 6),
                lat=round(34.70 + rng.random() * 0.12, 6),
                address=f"perf street {n}-{i}",
            )
        )
    return StationState(
        station_id=sid, status="online", boot_epoch=boot_epoch, ts=t0, sensors=infos
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--stations", type=int, default=100)
    ap.add_argument("--sensors", type=int, default=100, help="cover sensors per station")
    ap.add_argument("--seconds", type=int, required=True, help="device seconds per station")
    ap.add_argument("--batch", type=int, required=True, help="readings per message")
    ap.add_argument("--above-fraction", type=float, default=0.001)
    ap.add_argument("--above-run", type=int, default=5, help="consecutive seconds above 15")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prefix", default="ps")
    ap.add_argument("--t0", default="2026-11-29T08:00:00+00:00", help="device time of second 0")
    args = ap.parse_args()
    if (args.sensors * args.seconds) % args.batch:
        ap.error("sensors*seconds must be a multiple of --batch (whole messages)")

    t0 = datetime.fromisoformat(args.t0).astimezone(UTC)
    rng = random.Random(args.seed)
    total_readings = args.stations * args.sensors * args.seconds
    incidents = round(total_readings * args.above_fraction / args.above_run)
    # (station, sensor) -> list of start seconds; starts leave room for a healthy reading before
    # and after, and incidents on one sensor never overlap.
    hot: dict[tuple[int, int], list[int]] = {}
    placed, tries = 0, 0
    last_start = args.seconds - args.above_run - 1
    if incidents and last_start < 1:
        ap.error("--seconds too short for an incident of --above-run seconds")
    while placed < incidents and tries < incidents * 100:
        tries += 1
        key = (rng.randrange(args.stations), rng.randrange(args.sensors))
        start = rng.randint(1, last_start)
        spans = hot.setdefault(key, [])
        if any(abs(start - s) <= args.above_run + 1 for s in spans):
            continue
        spans.append(start)
        placed += 1
    above_at: set[tuple[int, int, int]] = {
        (st, se, s + k)
        for (st, se), starts in hot.items()
        for s in starts
        for k in range(args.above_run)
    }

    (args.out / "births").mkdir(parents=True, exist_ok=True)
    (args.out / "telemetry").mkdir(parents=True, exist_ok=True)
    messages = readings = above = 0
    max_bytes = 0
    for st in range(args.stations):
        sid = station_id(st + 1, args.prefix)
        boot_epoch = 1_764_400_000 + st
        birth = build_birth(sid, st + 1, args.sensors, boot_epoch, t0)
        raw_birth = encode(birth)
        decode_state(StationTopic(sid, Channel.STATE), raw_birth)
        (args.out / "births" / f"{sid}.json").write_bytes(raw_birth + b"\n")
        topic = StationTopic(sid, Channel.TELEMETRY)
        vr = random.Random(f"{args.seed}/{sid}")
        batteries = [round(vr.uniform(3.45, 3.65), 3) for _ in range(args.sensors)]
        levels = [round(vr.uniform(0.2, 0.6), 3) for _ in range(args.sensors)]
        seq = 0
        pending: list[dict[str, object]] = []
        with (args.out / "telemetry" / f"{sid}.jsonl").open("wb") as out:
            for sec in range(args.seconds):
                base = t0 + timedelta(seconds=sec)
                for se in range(args.sensors):
                    ts = base + timedelta(milliseconds=5 * se)  # sensors sample within the second
                    if (st, se, sec) in above_at:
                        tilt = round(vr.uniform(20.0, 60.0), 2)
                    else:
                        tilt = round(abs(vr.gauss(0.0, 0.3)), 3)
                    if tilt > THRESHOLD:
                        above += 1
                    pending.append(
                        {
                            "sensor_id": f"{sid}.cover-{se + 1:03d}",
                            "kind": "cover",
                            "ts": iso(ts),
                            "values": {
                                "tilt_deg": tilt,
                                "water_level_m": levels[se],
                                "battery_v": batteries[se],
                            },
                        }
                    )
                    if len(pending) == args.batch:
                        sent = ts + timedelta(milliseconds=20)
                        doc = {
                            "v": 1,
                            "station_id": sid,
                            "boot_epoch": boot_epoch,
                            "seq": seq,
                            "sent_at": iso(sent),
                            "readings": pending,
                        }
                        line = json.dumps(doc, separators=(",", ":")).encode()
                        decode_telemetry(topic, line)  # the project's decoder: refuse bad output
                        out.write(line + b"\n")
                        max_bytes = max(max_bytes, len(line))
                        messages += 1
                        readings += len(pending)
                        seq += 1
                        pending = []
    meta = {
        "stations": args.stations,
        "sensors_per_station": args.sensors,
        "device_seconds": args.seconds,
        "readings_per_message": args.batch,
        "messages": messages,
        "readings": readings,
        "readings_above_15": above,
        "incidents": placed,
        "above_run_s": args.above_run,
        "max_message_bytes": max_bytes,
        "topic": "citysense/v1/stations/{station_id}/telemetry",
        "station_prefix": args.prefix,
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
