"""The edge outbox: write and drain rates, and the one-hour backlog of a 500-sensor station.

``python -m bench.outbox [--readings N] [--sensors 500] [--seconds 3600] [--json]``

- Rates: the same readings (one ``put`` per tick of a station, ``--sensors`` readings each) go
  into ``MemoryOutbox`` (the baseline) and ``SqliteOutbox`` at ``synchronous=FULL`` and
  ``NORMAL``, then are drained: ``take`` a window, build each batch's wire payload, hand it to a
  fake sender, ``ack``. Readings per second, with ratios to the memory outbox.
- Backlog: in a process of its own (so its RSS is the outbox's, not this run's), a station of
  ``--sensors`` sensors at one reading per second writes ``--seconds`` of backlog into a
  ``SqliteOutbox`` (FULL), the outbox is reopened (as after a restart) and drained into the
  fake sender. Goals (issue 8): drained in ≤ 10 s, ≤ 50 MB RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import BenchError, Measurement, compared, per_second, table
from edge.outbox import MemoryOutbox, Outbox, OutboxLimits
from edge.outbox_sqlite import SqliteOutbox, Synchronous
from protocol import Channel, Reading, SensorKind, StationTopic, decode_telemetry

STATION = "st-bench"
T0 = datetime(2026, 7, 1, tzinfo=UTC)
BOOT = int(T0.timestamp())
LIMITS = OutboxLimits(max_bytes=1 << 30, max_age=timedelta(days=30))
"""Large enough that nothing is evicted: the figures are of storing and sending, not dropping."""
WINDOW = 8
MAX_BATCH = 500
DRAIN_GOAL_S = 10.0
RSS_GOAL_MB = 50.0


class FakeSender:
    """Stands in for the MQTT client: takes payloads, keeps their count, size and first one."""

    def __init__(self) -> None:
        self.messages = self.bytes = 0
        self.first: bytes | None = None

    def send(self, payload: bytes) -> None:
        self.messages += 1
        self.bytes += len(payload)
        if self.first is None:
            self.first = payload


def station_ticks(sensors: int, seconds: int, seed: int = 0) -> Iterator[list[Reading]]:
    """One list of readings per second: every sensor once (covers, pressure and poles 4:1:2)."""
    rng = random.Random(seed)
    kinds = [SensorKind.COVER] * 4 + [SensorKind.PRESSURE] + [SensorKind.POLE] * 2
    layout = [(f"{STATION}.s{n:04d}", kinds[n % len(kinds)]) for n in range(sensors)]
    for second in range(seconds):
        ts = T0 + timedelta(seconds=second)
        yield [
            Reading.model_construct(sensor_id=sid, kind=kind, ts=ts, values=_values(kind, rng))
            for sid, kind in layout
        ]


def _values(kind: SensorKind, rng: random.Random) -> dict[str, float]:
    if kind == SensorKind.COVER:
        return {"tilt_deg": round(rng.uniform(0, 2), 3), "battery_v": 3.6}
    if kind == SensorKind.PRESSURE:
        return {"pressure_mpa": round(rng.uniform(0.3, 0.34), 4)}
    return {"tilt_deg": round(rng.uniform(0.1, 0.8), 3)}


def drain(outbox: Outbox, sender: FakeSender, sent_at: datetime) -> int:
    """Send everything the way the agent will: a window of batches, then their PUBACKs."""
    readings = 0
    while batches := outbox.take():
        for batch in batches:
            sender.send(batch.payload(STATION, sent_at))
            readings += batch.count
        for batch in batches:
            outbox.ack(batch.seq)
    return readings


def _check(sender: FakeSender) -> None:
    if sender.first is None:
        raise BenchError("nothing was sent")
    decode_telemetry(StationTopic(STATION, Channel.TELEMETRY), sender.first)


def measure_rates(readings: int, sensors: int = 500) -> Iterator[Measurement]:
    """Write and drain rates of the memory and SQLite outboxes over the same readings."""
    ticks = list(station_ticks(sensors, max(1, readings // sensors)))
    n = sum(len(tick) for tick in ticks)
    with tempfile.TemporaryDirectory(prefix="citysense-outbox-bench-") as work:
        makers: dict[str, Callable[[], Outbox]] = {
            "memory": lambda: MemoryOutbox(LIMITS, boot_epoch=BOOT, window=WINDOW),
            "sqlite_full": lambda: _sqlite(Path(work) / "full.db", "FULL"),
            "sqlite_normal": lambda: _sqlite(Path(work) / "normal.db", "NORMAL"),
        }
        baseline: dict[str, Measurement] = {}
        for name, make in makers.items():
            write_s, drain_s = _write_and_drain(make(), ticks, n)
            for phase, seconds in (("write", write_s), ("drain", drain_s)):
                found = Measurement(
                    name=f"outbox_{phase}_{name}",
                    title=f"edge outbox {phase}: {name.replace('_', ' ')}",
                    group="edge",
                    params={"readings": n, "per_put": sensors, "window": WINDOW},
                    figures={"readings_per_s": per_second(n, seconds), "seconds": seconds},
                )
                if name == "memory":
                    baseline[phase] = found
                    yield found
                else:
                    yield compared(found, baseline[phase], ["readings_per_s"])


def _write_and_drain(outbox: Outbox, ticks: list[list[Reading]], n: int) -> tuple[float, float]:
    sender = FakeSender()
    try:
        gc.collect()
        started = time.perf_counter()
        for tick in ticks:
            outbox.put(tick)
        written = time.perf_counter()
        drained = drain(outbox, sender, T0)
        done = time.perf_counter()
    finally:
        outbox.close()
    if drained != n:
        raise BenchError(f"{type(outbox).__name__}: drained {drained} of {n} readings")
    _check(sender)
    return written - started, done - written


def _sqlite(path: Path, synchronous: Synchronous) -> SqliteOutbox:
    return SqliteOutbox(
        path,
        boot_epoch=BOOT,
        limits=LIMITS,
        max_batch=MAX_BATCH,
        window=WINDOW,
        synchronous=synchronous,
    )


def _timed(run: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def backlog_in_this_process(work: Path, sensors: int, seconds: int) -> dict[str, float]:
    """Write the backlog, reopen, drain; figures as plain numbers (run in a child process)."""
    path = work / "backlog.db"
    rss_at_start = _rss_mb()
    with _sqlite(path, "FULL") as outbox:
        write_s = _timed(lambda: [outbox.put(tick) for tick in station_ticks(sensors, seconds)])
        stored = len(outbox)
    rss_after_write = _rss_mb()
    db_bytes = sum(p.stat().st_size for p in work.iterdir())
    opened: list[SqliteOutbox] = []
    open_s = _timed(lambda: opened.append(_sqlite(path, "FULL")))
    sender = FakeSender()
    drained: list[int] = []
    with opened[0] as outbox:
        drain_s = _timed(lambda: drained.append(drain(outbox, sender, T0)))
        if len(outbox) or outbox.stats.evicted_readings:
            raise BenchError(f"backlog left {len(outbox)}, evicted {outbox.stats.evicted_readings}")
    _check(sender)
    return {
        "readings": float(stored),
        "drained": float(drained[0]),
        "messages": float(sender.messages),
        "payload_bytes": float(sender.bytes),
        "write_seconds": write_s,
        "write_readings_per_s": per_second(stored, write_s),
        "open_seconds": open_s,
        "drain_seconds": drain_s,
        "readings_per_s": per_second(drained[0], drain_s),
        "db_bytes": float(db_bytes),
        "rss_mb_at_start": rss_at_start,
        "rss_mb_after_write": rss_after_write,
        "rss_mb_after_drain": _rss_mb(),
        "peak_rss_mb": _rss_mb("VmHWM"),
    }


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (``VmHWM``: its peak). Not ``ru_maxrss``: Linux carries that
    over from the parent across fork and exec, so a child would report the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/self/status")


def measure_backlog(sensors: int = 500, seconds: int = 3600) -> Measurement:
    """The backlog, written and drained in a child process; its figures as a measurement."""
    with tempfile.TemporaryDirectory(prefix="citysense-outbox-backlog-") as work:
        child = subprocess.run(
            [sys.executable, "-m", "bench.outbox", "--child", work, *_sized(sensors, seconds)],
            capture_output=True,
            text=True,
            check=False,
        )
    if child.returncode != 0:
        raise BenchError(f"backlog run failed: {child.stderr[-2000:]}")
    figures = json.loads(child.stdout)
    figures["drain_goal_seconds"], figures["rss_goal_mb"] = DRAIN_GOAL_S, RSS_GOAL_MB
    return Measurement(
        name="outbox_backlog_drain",
        title=f"{seconds} s backlog of a {sensors}-sensor station: SqliteOutbox (FULL) drained",
        group="edge",
        params={"sensors": sensors, "seconds": seconds, "window": WINDOW, "max_batch": MAX_BATCH},
        figures=figures,
    )


def _sized(sensors: int, seconds: int) -> list[str]:
    return ["--sensors", str(sensors), "--seconds", str(seconds)]


def measure(
    readings: int = 100_000, sensors: int = 500, seconds: int = 3600
) -> Iterator[Measurement]:
    yield from measure_rates(readings, sensors)
    yield measure_backlog(sensors, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--readings", type=int, default=100_000, help="for the rates")
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=3600, help="of backlog")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(backlog_in_this_process(args.child, args.sensors, args.seconds)))
        return
    found = list(measure(args.readings, args.sensors, args.seconds))
    if args.json:
        print(json.dumps([m.to_json() for m in found], indent=2))
        return
    print(table(found))
    backlog = found[-1].figures
    print(
        f"\nbacklog: {backlog['readings']:,.0f} readings ({backlog['db_bytes'] / 1e6:,.0f} MB on"
        f" disk) written in {backlog['write_seconds']:.1f} s, reopened in"
        f" {backlog['open_seconds']:.2f} s, drained in {backlog['drain_seconds']:.1f} s"
        f" (goal ≤ {DRAIN_GOAL_S:.0f} s); RSS {backlog['rss_mb_after_drain']:.1f} MB after the"
        f" drain, peak {backlog['peak_rss_mb']:.1f} MB (goal ≤ {RSS_GOAL_MB:.0f} MB), of which"
        f" {backlog['rss_mb_at_start']:.1f} MB before the outbox was opened"
    )


if __name__ == "__main__":
    main()
