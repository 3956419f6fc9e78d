"""The whole-stack figures: ingest draining a pre-filled queue beside its consumer baselines,
its CPU per 1,000 readings, a profile of it under load, and reading → case latency.

One phase per message size: the consumers' persistent sessions are registered, the load
generator fills the broker's queues (100 stations, QoS 1, as fast as it can) and finishes, then
``mosquitto_sub``, the do-nothing paho subscriber and the node drain the same queue one after
the other, alone on the two cores (bench/drain.py, bench/stack.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.drain import (
    drain_mosquitto_sub,
    drain_paho,
    drain_session,
    forget_session,
    register_session,
)
from bench.hotspots import Hotspots, sampled
from bench.latency import measure_case_latency
from bench.loadgen import LoadSpec, run_load
from bench.report import BenchError, Measurement, compared
from bench.stack import ClockedGroups, Services, drain_node, node_on, untuned
from citysense.node import Node

MAX_QUEUED = 100_000
"""broker_config/dev.conf ``max_queued_messages``: a phase must fit in one session's queue."""
STATIONS = 100


@dataclass(frozen=True)
class StackPlan:
    messages_b100: int
    """100-reading messages in the broker's queue for the throughput phase."""
    messages_b1: int
    """1-reading messages for the message-rate phase."""
    profile_messages: int
    """100-reading messages drained under the profiler."""
    latency_seconds: float
    latency_every_s: float
    """An incident this often: 20 a second puts the case store under a load of its own."""
    sparse_latency_seconds: float = 0.0
    """The same latency with an incident every ``sparse_every_s`` (0: not measured)."""
    sparse_every_s: float = 0.5
    fleet_stations: int = 0
    """The 100-reading drain again with this many stations (7 sensors each), the state a
    city-sized fleet leaves in the rules and the checkpoint (0: not measured)."""

    def __post_init__(self) -> None:
        if max(self.messages_b100, self.messages_b1, self.profile_messages) > MAX_QUEUED:
            raise ValueError(f"a phase holds at most {MAX_QUEUED} messages (max_queued_messages)")


def _fill(
    services: Services, client_ids: list[str], batch: int, messages: int, stations: int = STATIONS
) -> int:
    """Register the sessions, publish ``messages`` batches; returns how many were published."""
    for client_id in client_ids:
        register_session(services.mqtt_host, services.mqtt_port, client_id)
    spec = LoadSpec(
        services.mqtt_host,
        services.mqtt_port,
        stations=stations,
        rate=None,
        batch=batch,
        qos=1,
        processes=2,
        duration=None,
        total_readings=messages * batch,
        station_prefix=f"b{batch}-{uuid.uuid4().hex[:4]}",
    )
    stats = run_load(spec)
    if stats.errors:
        raise BenchError(f"the load generator had {stats.errors} errors filling the queue")
    return stats.messages


def _consumer(name: str, title: str, batch: int, figures: dict[str, float]) -> Measurement:
    figures = figures | {"readings_per_s": figures["messages_per_s"] * batch}
    params = {"batch_size": batch, "qos": 1, "messages": figures["received_messages"]}
    return Measurement(name, title, "stack", params, figures)


async def _drain_phase(
    node: Node,
    clock: ClockedGroups,
    services: Services,
    batch: int,
    messages: int,
    stations: int = STATIONS,
) -> list[Measurement]:
    host, port = services.mqtt_host, services.mqtt_port
    sub_id, paho_id, session_id = (
        f"bench-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("sub", "paho", "session")
    )
    ids = [node.ingest.client_id, sub_id, paho_id, session_id]
    expected = await asyncio.to_thread(_fill, services, ids, batch, messages, stations)
    fleet = "" if stations == STATIONS else "_fleet"
    of = "" if stations == STATIONS else f", {stations:,} stations"
    try:
        with untuned():
            sub = await asyncio.to_thread(drain_mosquitto_sub, host, port, sub_id, expected)
            paho = await asyncio.to_thread(drain_paho, host, port, paho_id, expected)
            session = await asyncio.to_thread(drain_session, host, port, session_id, expected)
    finally:
        for client_id in (sub_id, paho_id, session_id):
            await asyncio.to_thread(forget_session, host, port, client_id)
    figures = await drain_node(node, clock, services, expected)
    readings = figures["messages"] * batch
    figures |= {
        "readings_per_s": figures["messages_per_s"] * batch,
        "readings": readings,
        "node_cpu_s_per_1000_readings": figures["node_cpu_s"] / readings * 1000,
    }
    raw = _consumer(
        f"drain_mosquitto_sub_b{batch}{fleet}",
        f"mosquitto_sub -c -q 1 drains the queue ({batch}-reading messages{of}): the broker rate",
        batch,
        sub,
    )
    do_nothing = _consumer(
        f"drain_paho_b{batch}{fleet}",
        f"a do-nothing paho subscriber, QoS 1, drains the same queue ({batch}-reading "
        f"messages{of})",
        batch,
        paho,
    )
    client = _consumer(
        f"drain_session_b{batch}{fleet}",
        f"ingest's MQTT session, acknowledging at once and doing nothing else, drains the same "
        f"queue ({batch}-reading messages{of})",
        batch,
        session,
    )
    ingest = Measurement(
        f"node_drain_b{batch}{fleet}",
        f"a whole node (ingest, rules, SQLite cases, VictoriaMetrics, journal) drains the same "
        f"queue ({batch}-reading messages{of})",
        "stack",
        {"batch_size": batch, "qos": 1, "stations": stations, "rules": "default"},
        figures,
    )
    for baseline in (raw, do_nothing):
        ingest = compared(ingest, baseline, ["messages_per_s"])
    return [
        raw,
        compared(do_nothing, raw, ["messages_per_s"]),
        compared(compared(client, raw, ["messages_per_s"]), do_nothing, ["messages_per_s"]),
        ingest,
    ]


async def _profile_phase(
    node: Node, clock: ClockedGroups, services: Services, messages: int, results_dir: Path
) -> Measurement:
    expected = await asyncio.to_thread(_fill, services, [node.ingest.client_id], 100, messages)
    found = Hotspots()
    raw = results_dir / "ingest-profile.collapsed"
    watch: Callable[[], contextlib.AbstractContextManager[Any]] = partial(sampled, raw, found)
    figures = await drain_node(node, clock, services, expected, watch)
    (results_dir / "ingest-profile.txt").write_text(found.text(), encoding="utf-8")
    return Measurement(
        "node_profile_b100",
        f"where ingest's time goes draining 100-reading messages ({found.tool})",
        "stack",
        {
            "tool": found.tool,
            "messages": expected,
            "top_self": [[name, round(share, 4)] for name, share in found.top_self],
            "top_inclusive": [[name, round(share, 4)] for name, share in found.top_inclusive],
            "files": [str(raw), str(results_dir / "ingest-profile.txt")],
        },
        {"samples": float(found.samples), "profiled_messages_per_s": figures["messages_per_s"]},
    )


async def _throughput(
    plan: StackPlan, services: Services, workdir: Path, results_dir: Path
) -> list[Measurement]:
    # No allowed lateness: the load generator publishes the whole backlog within a few seconds
    # of event time, so with the default 6 s every reading would still wait in its station's
    # reorder buffer when the drain ends, and the rules' work would fall outside the window.
    async with node_on(services, workdir, allowed_lateness_s=0.0) as node:
        clock = ClockedGroups(node)
        done = await _drain_phase(node, clock, services, 100, plan.messages_b100)
        done += await _drain_phase(node, clock, services, 1, plan.messages_b1)
        done.append(await _profile_phase(node, clock, services, plan.profile_messages, results_dir))
        if plan.fleet_stations:  # last: its state stays in the node
            done += await _drain_phase(
                node, clock, services, 100, plan.messages_b100, plan.fleet_stations
            )
        await asyncio.to_thread(
            forget_session, services.mqtt_host, services.mqtt_port, node.ingest.client_id
        )
        letters = node.ingest.dead_letter_path
    if letters.exists() and letters.stat().st_size:
        raise BenchError(f"ingest dead-lettered messages during the bench: see {letters}")
    return done


def measure_stack(plan: StackPlan, services: Services, results_dir: Path) -> Iterator[Measurement]:
    """The throughput phases, then the latency at half the rate ingest reached."""
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        throughput = asyncio.run(_throughput(plan, services, Path(tmp) / "throughput", results_dir))
        yield from throughput
        drained = next(m for m in throughput if m.name == "node_drain_b100")
        runs = [("node_case_latency", plan.latency_seconds, plan.latency_every_s)]
        if plan.sparse_latency_seconds > 0:
            runs.append(
                ("node_case_latency_sparse", plan.sparse_latency_seconds, plan.sparse_every_s)
            )
        for name, seconds, every_s in runs:
            yield measure_case_latency(
                services,
                Path(tmp) / name,
                rate=drained.figures["readings_per_s"] / 2,
                seconds=seconds,
                every_s=every_s,
                name=name,
            )
