"""What one benchmark run measures, in which order, and what each figure is divided by."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.acceptance import StackPlan, measure_stack
from bench.broker_rate import BASELINE_STYLE, measure_publisher
from bench.casewrite import measure as measure_case_write
from bench.encoding import measure_encoders
from bench.engine import Traffic, measure_state, measure_throughput
from bench.ingest import measure_decode, measure_end_to_end, measure_pipeline, traffic
from bench.load import measure_loadgen
from bench.loadgen import LoadSpec
from bench.outbox import measure as measure_outbox
from bench.report import Measurement, compared
from bench.stack import Services
from citysense.broker import MosquittoBroker
from citysense.victoria import VictoriaMetrics

BROKER_FIGURES = ("messages_per_s", "bytes_per_s")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; ``QUICK`` finishes in well under a minute, ``FULL`` in a few."""

    name: str
    raw_seconds: float
    load_seconds: float
    encode_messages: int
    pipeline_messages: int
    e2e_readings: int
    max_qos: tuple[int, ...]
    client_styles: tuple[str, ...]
    stations: int = 100
    batch: int = 50
    processes: int = 2
    fixed_rate: float = 10_000.0
    engine_stations: int = 200
    engine_steps: int = 40
    engine_chunk: int = 200
    """Batches per ``BatchEngine.process_chunk`` call."""
    state_sensors: int = 1_000_000
    case_writes: int = 100
    """Cases per ``bench.casewrite`` measurement."""
    outbox_readings: int = 200_000
    outbox_backlog_seconds: int = 3600
    """A one-hour backlog of a 500-sensor station (1 reading/s each)."""
    stack: StackPlan = field(
        default_factory=lambda: StackPlan(
            messages_b100=10_000,
            messages_b1=50_000,
            profile_messages=4_000,
            # 600 and 200 incidents: a p99 of a few hundred samples moves less from run to run
            latency_seconds=30.0,
            latency_every_s=0.05,
            sparse_latency_seconds=100.0,
            fleet_stations=10_000,
        )
    )
    """The whole-stack phases (bench/acceptance.py)."""

    def load(
        self, host: str, port: int, *, rate: float | None, qos: int, total: int | None = None
    ) -> LoadSpec:
        """The load generator's spec: ``load_seconds`` long, or ``total`` readings."""
        return LoadSpec(
            host=host,
            port=port,
            stations=self.stations,
            rate=rate,
            batch=self.batch,
            qos=qos,
            processes=self.processes,
            duration=None if total else self.load_seconds,
            total_readings=total,
        )


QUICK = Plan(
    "quick",
    2.0,
    3.0,
    1_000,
    2_000,
    200_000,
    (1,),
    (),
    engine_stations=100,
    engine_steps=20,
    state_sensors=100_000,
    outbox_readings=50_000,
    outbox_backlog_seconds=360,
    case_writes=30,
    stack=StackPlan(
        messages_b100=1_500,
        messages_b1=5_000,
        profile_messages=1_000,
        latency_seconds=3.0,
        latency_every_s=0.05,
        sparse_latency_seconds=3.0,
    ),
)
FULL = Plan(
    "full",
    5.0,
    8.0,
    3_000,
    6_000,
    500_000,
    (0, 1),
    ("paho_threaded", "aiomqtt_sequential", "aiomqtt_concurrent"),
)

Progress = Callable[[Measurement], None]


def in_process(plan: Plan) -> Iterator[Measurement]:
    """Measurements without a broker: payload encoding, the pipeline fed in-process."""
    yield from measure_encoders(batch=plan.batch, messages=plan.encode_messages)
    messages = traffic(stations=plan.stations, batch=plan.batch, messages=plan.pipeline_messages)
    decode = measure_decode(messages, plan.batch)
    yield decode
    yield compared(measure_pipeline(messages, plan.batch), decode, ["readings_per_s"])
    yield from engine(plan)
    yield from outbox(plan)
    yield from measure_case_write(cases=plan.case_writes)


def outbox(plan: Plan) -> Iterator[Measurement]:
    """The edge outbox: write and drain rates in memory and on disk, and a one-hour backlog of a
    500-sensor station drained after a reconnect, with the agent process's RSS."""
    yield from measure_outbox(
        readings=plan.outbox_readings, sensors=500, seconds=plan.outbox_backlog_seconds
    )


def engine(plan: Plan) -> Iterator[Measurement]:
    """The rule engine alone: plain loop against batched path, and its state at fleet size."""
    spec = Traffic(stations=plan.engine_stations, steps=plan.engine_steps)
    yield from measure_throughput(spec, plan.engine_chunk)
    yield measure_state(plan.state_sensors)


def through_broker(
    plan: Plan, host: str, port: int, pipeline: Measurement
) -> Iterator[Measurement]:
    """Measurements through one Mosquitto, each compared with its raw rate of the same run."""
    raw = {
        qos: measure_publisher(host, port, style=BASELINE_STYLE, qos=qos, seconds=plan.raw_seconds)
        for qos in (0, 1)
    }
    yield from raw.values()
    for qos in plan.max_qos:
        spec = plan.load(host, port, rate=None, qos=qos)
        yield compared(measure_loadgen(f"loadgen_max_qos{qos}", spec), raw[qos], BROKER_FIGURES)
    spec = plan.load(host, port, rate=plan.fixed_rate, qos=1)
    fixed = measure_loadgen(f"loadgen_{plan.fixed_rate:.0f}_qos1", spec)
    yield compared(fixed, raw[1], BROKER_FIGURES)
    e2e_spec = plan.load(host, port, rate=None, qos=1, total=plan.e2e_readings)
    e2e = compared(measure_end_to_end(e2e_spec), raw[1], ["messages_per_s"])
    yield compared(e2e, pipeline, ["readings_per_s"])
    for style in plan.client_styles:
        for qos in (0, 1):
            client = measure_publisher(host, port, style=style, qos=qos, seconds=plan.raw_seconds)
            yield compared(client, raw[qos], ["messages_per_s"])


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def run(plan: Plan, progress: Progress, results_dir: Path = RESULTS_DIR) -> list[Measurement]:
    """Every measurement of ``plan``; ``progress`` sees each one as it is made. The profile's
    files go to ``results_dir``."""
    done: list[Measurement] = []

    def record(measurement: Measurement) -> None:
        done.append(measurement)
        progress(measurement)

    for measurement in in_process(plan):
        record(measurement)
    pipeline = next(m for m in done if m.name == "ingest_in_process")
    with MosquittoBroker() as broker:
        for measurement in through_broker(plan, broker.host, broker.port, pipeline):
            record(measurement)
        with (
            tempfile.TemporaryDirectory(prefix="citysense-bench-vm-") as scratch,
            VictoriaMetrics(Path(scratch)) as victoria,
        ):
            services = Services.of(broker, victoria)
            for measurement in measure_stack(plan.stack, services, results_dir):
                record(measurement)
    return done
