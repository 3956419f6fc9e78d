"""Reading → case on the SSE stream, under a steady load.

A node with ``bench/data/latency_rules.yaml`` (the cover rule with hold 0) and an allowed lateness
of 0 (a reading is evaluated as soon as its station's watermark reaches it, not 6 s later)
serves its HTTP API; a client follows ``/api/v1/cases/stream``. The load generator publishes
100-reading batches at a steady rate (half the measured maximum) while this process publishes an
incident every ``every_s``: a one-reading batch of a fresh station whose cover reads 80°. The
latency of an incident is from just before its ``publish`` to its ``opened`` event on the stream.

The incidents' publisher and the stream's client run in a process of their own, as they would on
other machines: in the node's process they took the GIL from it (a paho thread, and the parsing
of every event on the stream). Both stamps are that process's monotonic clock (on Linux, one
clock for all processes, which ``bench.latency_stages`` relies on to compare them with the
node's own stamps).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.loadgen import LoadSpec, run_load
from bench.report import BenchError, Measurement
from bench.stack import CpuSample, Services, node_on
from center.auth import Role
from citysense.node import Node, node_tasks, serve_until_stopped
from citysense.runtime import runtime_tasks
from protocol import Channel, Reading, SensorKind, StationTopic, TelemetryBatch, encode

LATENCY_RULES = Path(__file__).resolve().parent / "data" / "latency_rules.yaml"
WARMUP_S = 2.0
"""The load runs this long before the first incident (its processes start, the rate settles)."""
SETTLE_S = 3.0
START_TIMEOUT_S = 15.0


def incident(station_id: str) -> tuple[str, bytes]:
    now = datetime.now(UTC)
    batch = TelemetryBatch(
        station_id=station_id,
        boot_epoch=1,
        seq=0,
        sent_at=now,
        readings=[
            Reading(
                sensor_id=f"{station_id}.cover-01",
                kind=SensorKind.COVER,
                ts=now,
                values={"tilt_deg": 80.0, "water_level_m": 0.3, "battery_v": 3.6},
            )
        ],
    )
    return str(StationTopic(station_id, Channel.TELEMETRY)), encode(batch)


async def _follow(url: str, token: str, opened: dict[str, float], ready: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(timeout=None, headers=headers) as client,
        client.stream("GET", f"{url}/api/v1/cases/stream") as answer,
    ):
        event = ""
        async for line in answer.aiter_lines():
            if line.startswith(":"):
                ready.set()
            elif line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event == "opened":
                seen = time.monotonic()
                case = json.loads(line.removeprefix("data:"))["case"]
                opened.setdefault(case["sensor_id"], seen)


async def _publish_incidents(
    host: str, port: int, seconds: float, every_s: float, published: dict[str, float]
) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    run = uuid.uuid4().hex[:6]
    try:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            station = f"inc-{run}-{n:05d}"
            topic, payload = incident(station)
            published[f"{station}.cover-01"] = time.monotonic()
            client.publish(topic, payload, qos=1)
            n += 1
            await asyncio.sleep(max(0.0, started + n * every_s - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()


async def _client(
    url: str, token: str, host: str, port: int, seconds: float, every_s: float, conn: Connection
) -> None:
    """Follow the stream; say ``ready``; on ``go``, publish the incidents; send back when each
    was published and when its case was seen (monotonic clock)."""
    published: dict[str, float] = {}
    opened: dict[str, float] = {}
    ready = asyncio.Event()
    follower = asyncio.create_task(_follow(url, token, opened, ready))
    try:
        await asyncio.wait_for(ready.wait(), START_TIMEOUT_S)
        conn.send("ready")
        await asyncio.to_thread(conn.recv)
        await _publish_incidents(host, port, seconds, every_s, published)
        deadline = time.monotonic() + SETTLE_S
        while len(opened) < len(published) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    conn.send((published, opened))


def _client_process(*args: object) -> None:
    asyncio.run(_client(*args))  # type: ignore[arg-type]


def _receive(conn: Connection, timeout_s: float) -> object:
    if not conn.poll(timeout_s):
        raise BenchError(f"the incident client said nothing for {timeout_s:.0f} s")
    return conn.recv()


async def _wait_up(node: Node, url: str) -> None:
    async with asyncio.timeout(START_TIMEOUT_S), httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/healthz")).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        await node.consumer.connected.wait()


async def _viewer_token(node: Node) -> str:
    """The stream needs a credential: a viewer's token on the node's own database."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    await node.accounts.add_user(name, Role.VIEWER, None)
    token, _ = await node.accounts.issue_token(name, "latency", Role.VIEWER)
    return token


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


class CollectorPauses:
    """The cyclic garbage collector's passes in this process (the node's) while installed:
    every thread waits during one."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> CollectorPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def figures(self) -> dict[str, float]:
        return {
            "gc_passes": float(len(self.pauses_ms)),
            "gc_pause_max_ms": max(self.pauses_ms, default=0.0),
            "gc_pauses_over_10_ms": float(sum(1 for p in self.pauses_ms if p > 10)),
        }


async def _measure(
    services: Services, workdir: Path, rate: float, seconds: float, every_s: float
) -> tuple[dict[str, float], dict[str, float], float, dict[str, float]]:
    """The incidents' publish and case times, the load's rate, and what the machine did
    meanwhile (CPU of the node, the broker and VictoriaMetrics; the collector's pauses)."""
    async with node_on(services, workdir, rules_path=LATENCY_RULES, allowed_lateness_s=0.0) as node:
        url = f"http://127.0.0.1:{node.center.port}"
        server = node.server()
        tasks = node_tasks(node) | runtime_tasks()
        serving = asyncio.create_task(serve_until_stopped(server, tasks))
        client: multiprocessing.process.BaseProcess | None = None
        try:
            await _wait_up(node, url)
            token = await _viewer_token(node)
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            client = context.Process(
                target=_client_process,
                args=(url, token, services.mqtt_host, services.mqtt_port, seconds, every_s, theirs),
                name="latency-client",
                daemon=True,
            )
            client.start()
            if await asyncio.to_thread(_receive, ours, START_TIMEOUT_S + 10) != "ready":
                raise BenchError("the incident client did not start")
            spec = LoadSpec(
                services.mqtt_host,
                services.mqtt_port,
                stations=100,
                rate=rate,
                batch=100,
                qos=1,
                processes=2,
                duration=WARMUP_S + seconds + 0.5,
                station_prefix="lat",
            )
            load = asyncio.create_task(asyncio.to_thread(run_load, spec))
            await asyncio.sleep(WARMUP_S)
            before = CpuSample.now(services)
            ours.send("go")
            with CollectorPauses() as pauses:
                answer = await asyncio.to_thread(_receive, ours, seconds + SETTLE_S + 30)
            used = CpuSample.now(services).since(before)
            window = used["cpu_window_s"]
            machine = {
                "node_cores": used["node_cores"],
                "broker_cores": used["broker_cpu_s"] / window,
                "victoria_cores": used["victoria_cpu_s"] / window,
                **pauses.figures(),
            }
            published, opened = cast(tuple[dict[str, float], dict[str, float]], answer)
            stats = await load
        finally:
            if client is not None:
                client.join(timeout=5)
                if client.is_alive():
                    client.kill()
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=15)
    return published, opened, stats.achieved_readings_per_s, machine


def measure_case_latency(
    services: Services,
    workdir: Path,
    *,
    rate: float,
    seconds: float,
    every_s: float,
    name: str = "node_case_latency",
) -> Measurement:
    published, opened, achieved, machine = asyncio.run(
        _measure(services, workdir, rate, seconds, every_s)
    )
    latencies = [(opened[s] - t) * 1000 for s, t in published.items() if s in opened]
    if not latencies:
        raise BenchError(f"none of {len(published)} incidents reached the case stream")
    return Measurement(
        name=name,
        title="reading → case on /api/v1/cases/stream, under a steady load (hold 0, lateness 0)"
        f", an incident every {every_s:g} s",
        group="stack",
        params={
            "target_readings_per_s": rate,
            "target": "half of node_drain_b100 readings/s",
            "batch_size": 100,
            "incident_every_s": every_s,
            "seconds": seconds,
            "rules": "bench/data/latency_rules.yaml",
            "allowed_lateness_s": 0.0,
        },
        figures={
            "p50_ms": percentile(latencies, 50),
            "p90_ms": percentile(latencies, 90),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies),
            "incidents": float(len(published)),
            "cases_seen": float(len(latencies)),
            "loadgen_readings_per_s": achieved,
            **machine,
        },
    )
