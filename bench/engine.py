"""The rule engine's rate and state size with the default rules.

Throughput: the same traffic (stations of covers, pressure loggers and poles in the load
generator's 4:1:2 mix, one reading per sensor per 5 s batch, incidents and rocking covers) fed to
``RuleEngine.process`` batch by batch (the plain loop, the baseline) and to
``rules.batch.BatchEngine`` in chunks of batches: from pydantic readings (columns built in the
timing) and from ready columns (what a columnar decoder would hand over). State: an engine that
has seen a reading of every sensor of a large fleet, measured with tracemalloc, and its snapshot.
"""

from __future__ import annotations

import gc
import math
import random
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.report import BenchError, Measurement, compared, per_second
from protocol import Reading, SensorKind
from rules import RuleEngine, load_rules, snapshot
from rules.batch import BatchEngine, Chunk

T0 = datetime(2026, 7, 1, tzinfo=UTC)
INTERVAL = 5.0
Batch = tuple[str, list[Reading], datetime]
MIX = (("cover", 4), ("pressure", 1), ("pole", 2))
"""Sensors per station in this ratio, as the load generator's stations have them."""


@dataclass(frozen=True)
class Traffic:
    stations: int = 100
    sensors: int = 49
    """Per station, in the ``MIX`` ratio."""
    steps: int = 40
    seed: int = 0
    incidents: float = 0.01
    """Share of sensors with an incident (an open cover, a burst, a fallen pole) at some step."""
    rocking: float = 0.002
    """Chance that a cover reading is a rocking spike."""
    disorder: float = 0.0
    """Chance that a batch is overtaken by the station's next one."""
    skewed: float = 0.0
    """Share of stations whose device clocks are off (behind by 5 min, or ahead by 10 s)."""
    resets: float = 0.0
    """Chance that a reading is stamped by a reset clock (2000-01-01)."""


def _kinds(sensors: int) -> list[str]:
    total = sum(weight for _, weight in MIX)
    out: list[str] = []
    for kind, weight in MIX:
        out += [kind] * round(sensors * weight / total)
    return (out + ["cover"] * sensors)[:sensors]


def _values(kind: str, rng: random.Random, t: float, incident: bool) -> dict[str, float]:
    if kind == "cover":
        tilt = rng.uniform(0.0, 2.0)
        if incident:
            tilt = rng.uniform(60.0, 64.0)
        return {"tilt_deg": tilt, "water_level_m": rng.uniform(0.2, 0.6), "battery_v": 3.6}
    if kind == "pressure":
        daily = 0.02 * math.sin(t / 86_400.0 * 2 * math.pi)
        drop = 0.08 if incident else 0.0
        return {"pressure_mpa": 0.32 + daily - drop + rng.uniform(-0.002, 0.002)}
    tilt = 20.0 if incident else rng.uniform(0.1, 0.8)
    return {"tilt_deg": tilt, "vibration_g": rng.uniform(0.0, 0.05)}


def traffic(spec: Traffic) -> list[Batch]:
    """Batches in arrival order: per step, one batch per station with a reading per sensor."""
    rng = random.Random(spec.seed)
    kinds = _kinds(spec.sensors)
    names = [f"eb-{s:05d}" for s in range(spec.stations)]
    skew = {name: rng.choice([300.0, -10.0]) for name in names if rng.random() < spec.skewed}
    trouble = {
        (name, k): rng.randrange(spec.steps)
        for name in names
        for k in range(spec.sensors)
        if rng.random() < spec.incidents
    }
    rocking = spec.rocking
    out: list[Batch] = []
    for step in range(spec.steps):
        sent = T0 + timedelta(seconds=(step + 1) * INTERVAL)
        for name in names:
            readings = []
            for k, kind in enumerate(kinds):
                t = step * INTERVAL + rng.uniform(0.0, INTERVAL) - skew.get(name, 0.0)
                start = trouble.get((name, k))
                hit = start is not None and start <= step < start + 12
                values = _values(kind, rng, t, hit)
                if kind == "cover" and not hit and rng.random() < rocking:
                    values["tilt_deg"] = rng.uniform(16.0, 40.0)
                ts = T0 + timedelta(seconds=t)
                if rng.random() < spec.resets:
                    ts = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=t)
                readings.append(
                    Reading(
                        sensor_id=f"{name}-{k:03d}", kind=SensorKind(kind), ts=ts, values=values
                    )
                )
            out.append((name, readings, sent))
    for i in range(len(out) - spec.stations):
        if rng.random() < spec.disorder:  # overtaken by the station's next batch
            j = i + spec.stations
            out[i], out[j] = out[j], out[i]
    return out


def chunks(batches: Sequence[Batch], size: int) -> list[Chunk]:
    return [Chunk.from_batches(batches[i : i + size]) for i in range(0, len(batches), size)]


def readings_in(batches: Sequence[Batch]) -> int:
    return sum(len(readings) for _, readings, _ in batches)


def _timed(run: object) -> float:
    assert callable(run)
    gc.collect()
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure_throughput(spec: Traffic, chunk: int) -> Iterator[Measurement]:
    """The plain loop, then the batched path on readings and on columns, same traffic."""
    batches = traffic(spec)
    n = readings_in(batches)
    rules = load_rules()
    params = {**spec.__dict__, "chunk_batches": chunk, "readings": n}
    plain_engine = RuleEngine(rules)
    plain_alerts: list[object] = []

    def plain() -> None:
        for station_id, readings, sent in batches:
            plain_alerts.extend(plain_engine.process(station_id, readings, sent))
        plain_alerts.extend(plain_engine.drain())

    def batched_readings() -> None:
        engine = BatchEngine(RuleEngine(rules))
        for i in range(0, len(batches), chunk):
            engine.process_chunk(Chunk.from_batches(batches[i : i + chunk]))
        engine.drain()

    ready = chunks(batches, chunk)
    column_engine = BatchEngine(RuleEngine(rules))
    column_alerts: list[object] = []

    def batched_columns() -> None:
        for part in ready:
            column_alerts.extend(column_engine.process_chunk(part))
        column_alerts.extend(column_engine.drain())

    def convert() -> None:
        chunks(batches, chunk)

    # Steady state: an engine that has met every sensor (the first two steps, untimed: the
    # first is released by the second), timed on the rest without the final drain; first sight
    # and drain happen once per sensor and per run.
    warm = -(-2 * spec.stations // chunk) * chunk
    steady_n = readings_in(batches[warm:])
    steady_plain = RuleEngine(rules)
    steady_columns = BatchEngine(RuleEngine(rules))
    for station_id, readings, sent in batches[:warm]:
        steady_plain.process(station_id, readings, sent)
    for part in ready[: warm // chunk]:
        steady_columns.process_chunk(part)

    def plain_steady() -> None:
        for station_id, readings, sent in batches[warm:]:
            steady_plain.process(station_id, readings, sent)

    def columns_steady() -> None:
        for part in ready[warm // chunk :]:
            steady_columns.process_chunk(part)

    seconds = {
        "engine_plain": _timed(plain),
        "engine_batched_columns": _timed(batched_columns),
        "engine_batched_readings": _timed(batched_readings),
        "engine_columns_from_readings": _timed(convert),
    }
    steady = {
        "engine_plain_steady": _timed(plain_steady),
        "engine_batched_columns_steady": _timed(columns_steady),
    }
    if repr(column_alerts) != repr(plain_alerts):  # repr: a NaN value is not == itself
        raise BenchError("the batched path's alerts differ from the plain loop's")
    titles = {
        "engine_plain": "RuleEngine.process, batch by batch (default rules)",
        "engine_batched_columns": "BatchEngine.process_chunk on ready columns",
        "engine_batched_readings": "BatchEngine: columns built from readings, then processed",
        "engine_columns_from_readings": "Chunk.from_batches alone (pydantic readings → columns)",
        "engine_plain_steady": "RuleEngine.process, every sensor met (no first sight, no drain)",
        "engine_batched_columns_steady": "BatchEngine on ready columns, every sensor met before",
    }
    base = _engine_measurement("engine_plain", titles, seconds, n, params, len(plain_alerts))
    yield base
    for name in list(seconds)[1:]:
        found = _engine_measurement(name, titles, seconds, n, params, len(plain_alerts))
        yield compared(found, base, ["readings_per_s"])
    steady_params = {**params, "readings": steady_n, "warm_batches": warm}
    base = _engine_measurement(
        "engine_plain_steady", titles, steady, steady_n, steady_params, len(plain_alerts)
    )
    yield base
    found = _engine_measurement(
        "engine_batched_columns_steady", titles, steady, steady_n, steady_params, len(plain_alerts)
    )
    yield compared(found, base, ["readings_per_s"])


def _engine_measurement(
    name: str,
    titles: dict[str, str],
    seconds: dict[str, float],
    n: int,
    params: dict[str, object],
    alerts: int,
) -> Measurement:
    return Measurement(
        name=name,
        title=titles[name],
        group="engine",
        params=params,
        figures={
            "readings_per_s": per_second(n, seconds[name]),
            "seconds": seconds[name],
            "readings": float(n),
            "alerts": float(alerts),
        },
    )


def fleet_batches(sensors: int, per_station: int = 50, step: int = 0) -> Iterator[Batch]:
    """One batch per station reading every sensor once: a fleet in the ``MIX`` ratio (``step``:
    the how-manieth batch of each station)."""
    rng = random.Random(1 + step)
    kinds = _kinds(per_station)
    start = T0 + timedelta(seconds=step * INTERVAL)
    sent = start + timedelta(seconds=INTERVAL)
    for s in range(math.ceil(sensors / per_station)):
        name = f"fl-{s:06d}"
        count = min(per_station, sensors - s * per_station)
        readings = [
            Reading(
                sensor_id=f"{name}-{k:03d}",
                kind=SensorKind(kinds[k]),
                ts=start + timedelta(seconds=rng.uniform(0.0, INTERVAL)),
                values=_values(kinds[k], rng, 0.0, False),
            )
            for k in range(count)
        ]
        yield name, readings, sent


def _learned(engine: RuleEngine) -> RuleEngine:
    """Every time-of-day profile filled (a day of learning): the snapshot at its largest."""
    rng = random.Random(2)
    for sensor in engine.sensors.values():
        for track in (sensor.tracks or {}).values():
            for base in track.memory.base.values() if track.memory else ():
                if base.profile is not None:
                    for slot in range(len(base.profile)):
                        base.profile[slot] = base.mean + rng.uniform(-0.02, 0.02)
    return engine


def _batched_state(sensors: int, chunk: int = 200) -> tuple[int, int]:
    """Bytes held by a ``BatchEngine`` (its engine and its columns) once its screen owns the
    resting sensors (two readings of each), and how many it owns."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = BatchEngine(RuleEngine(load_rules()))
    for step in range(3):  # the third batch releases the second one's readings
        part: list[Batch] = []
        for batch in fleet_batches(sensors, step=step):
            part.append(batch)
            if len(part) == chunk:
                engine.process_chunk(Chunk.from_batches(part))
                part = []
        if part:
            engine.process_chunk(Chunk.from_batches(part))
        del part
    engine.drain()  # as the plain engine is measured: nothing left waiting
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, int(engine._owned.sum())


def measure_state(sensors: int) -> Measurement:
    """Bytes of engine state per sensor once it has seen every sensor of a fleet (drained), in
    memory (tracemalloc) and as a snapshot, also with every pressure profile learned; and held by
    the batched path, whose columns mirror what its screen owns."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = RuleEngine(load_rules())
    for station_id, readings, sent in fleet_batches(sensors):
        engine.process(station_id, readings, sent)
        del readings
    engine.drain()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    counts = engine.state_counts()
    data = snapshot(engine)
    learned = len(snapshot(_learned(engine)))
    del engine
    batched, owned = _batched_state(sensors)
    return Measurement(
        name="engine_state",
        title="engine state after one reading of every sensor (4:1:2 covers/pressure/poles)",
        group="engine",
        params={"sensors": sensors, "per_station": 50, "mix": dict(MIX)},
        figures={
            "bytes_per_sensor": held / sensors,
            "snapshot_bytes_per_sensor": len(data) / sensors,
            "snapshot_learned_bytes_per_sensor": learned / sensors,
            "batched_bytes_per_sensor": batched / sensors,
            "batched_owned_sensors": float(owned),
            "memory_bytes": float(held),
            "snapshot_bytes": float(len(data)),
            "tracks": float(counts["tracks"]),
            "stations": float(counts["stations"]),
        },
    )
