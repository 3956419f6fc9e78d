"""Where an incident's time goes between its publish and its case on the live stream.

``python -m bench.latency_stages RATE SECONDS EVERY_S`` (for example ``35000 10 0.05``)

Runs ``bench.latency``'s measurement (a private Mosquitto and VictoriaMetrics, a node, the load
generator at RATE readings/s, an incident every EVERY_S for SECONDS) with the node's stages
wrapped to stamp each incident (monotonic clock, this process), and prints per stage the
p50/p90/p99/max in ms:

- ``pub→arrived``: the broker and ingest's MQTT session, to ingest's hand-over deque;
- ``arrived→handled``: waiting in the deque while the event loop handles earlier groups;
- ``handled→alert``: decoding and the rules;
- ``alert→store_in``: waiting for the case store (the alerts before it being written);
- ``store_in→stored``: ``CaseStore.apply_alerts`` of the batch it is in;
- ``stored→broadcast``: the case service, to the live stream's fan-out;
- ``broadcast→streamed``: the stream's generator takes the event from its queue (the event
  loop's turn), to the HTTP server;
- ``streamed→sse``: the server's encoding and write, the socket, the client's parser.

A diagnostic, not part of ``make bench``: the wrappers cost a little themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.latency import _measure, percentile
from bench.stack import Services
from citysense.broker import MosquittoBroker
from citysense.victoria import VictoriaMetrics

STAGES = (
    "pub",
    "arrived",
    "handled",
    "alert",
    "store_in",
    "stored",
    "broadcast",
    "streamed",
    "sse",
)
INCIDENT = "inc-"
"""``bench.latency``'s incident stations are named ``inc-<run>-<n>``."""

Stamps = dict[str, dict[str, float]]


def _sensor_of(topic: str) -> str | None:
    station = topic.split("/")[3] if topic.count("/") >= 4 else ""
    return f"{station}.cover-01" if station.startswith(INCIDENT) else None


def instrument(stamps: Stamps) -> None:
    """Wrap the node's stages (class attributes: every node built afterwards is stamped)."""
    import center.service as service
    import center.store as store
    import ingest.consumer as consumer
    import ingest.pipeline as pipeline

    def stamp(sensor: str | None, stage: str) -> None:
        if sensor is not None:
            stamps[sensor].setdefault(stage, time.monotonic())

    put = consumer._Arrivals.put

    def arrived(self: Any, items: Any) -> None:
        for item in items:
            stamp(_sensor_of(item.topic), "arrived")
        put(self, items)

    handle = pipeline.IngestPipeline._handle

    async def handled(self: Any, topic: str, payload: bytes, received_at: Any) -> None:
        stamp(_sensor_of(topic), "handled")
        await handle(self, topic, payload, received_at)

    deliver_all = pipeline.IngestPipeline._deliver_all

    async def alerted(self: Any, alerts: Any, received_at: Any) -> None:
        for alert in alerts:
            stamp(alert.sensor_id if alert.sensor_id.startswith(INCIDENT) else None, "alert")
        await deliver_all(self, alerts, received_at)

    apply_alerts = store.CaseStore.apply_alerts

    async def stored(self: Any, alerts: Any) -> Any:
        sensors = [a.sensor_id for a, _, _ in alerts if a.sensor_id.startswith(INCIDENT)]
        for sensor in sensors:
            stamp(sensor, "store_in")
        outcomes = await apply_alerts(self, alerts)
        for sensor in sensors:
            stamp(sensor, "stored")
        return outcomes

    publish = service.CaseService._publish

    async def broadcast(self: Any, change: Any) -> None:
        sensor = change.case.sensor_id
        stamp(sensor if sensor.startswith(INCIDENT) else None, "broadcast")
        await publish(self, change)

    import center.api.cases as cases
    import center.stream

    events_after = center.stream.events_after

    async def streamed(*args: Any, **kwargs: Any) -> Any:
        async for event in events_after(*args, **kwargs):
            sensor = "" if event is None else event.case.sensor_id
            stamp(sensor if sensor.startswith(INCIDENT) else None, "streamed")
            yield event

    setattr(cases, "events_after", streamed)  # noqa: B010 (the name the route reads)
    consumer._Arrivals.put = arrived  # type: ignore[method-assign]
    pipeline.IngestPipeline._handle = handled  # type: ignore[method-assign]
    pipeline.IngestPipeline._deliver_all = alerted  # type: ignore[method-assign]
    store.CaseStore.apply_alerts = stored  # type: ignore[method-assign]
    service.CaseService._publish = broadcast  # type: ignore[method-assign]


def stages(
    published: dict[str, float], opened: dict[str, float], stamps: Stamps
) -> dict[str, list[float]]:
    """Per stage (and ``total``), the ms of each incident that reached the stream."""
    spans: dict[str, list[float]] = defaultdict(list)
    for sensor, sent in published.items():
        if sensor not in opened:
            continue
        seen = {"pub": sent, **stamps[sensor], "sse": opened[sensor]}
        for start, end in pairwise(STAGES):
            if start in seen and end in seen:
                spans[f"{start}→{end}"].append((seen[end] - seen[start]) * 1000)
        spans["total"].append((opened[sensor] - sent) * 1000)
    return spans


def slowest(
    published: dict[str, float], opened: dict[str, float], stamps: Stamps, n: int
) -> list[str]:
    """One line per incident among the ``n`` slowest: its total and each stage's ms."""
    seen = [s for s in published if s in opened]
    seen.sort(key=lambda s: opened[s] - published[s], reverse=True)
    lines = []
    for sensor in seen[:n]:
        at = {"pub": published[sensor], **stamps[sensor], "sse": opened[sensor]}
        parts = [
            f"{end} {(at[end] - at[start]) * 1000:.1f}"
            for start, end in pairwise(STAGES)
            if start in at and end in at
        ]
        lines.append(f"{(opened[sensor] - published[sensor]) * 1000:6.1f} ms: " + ", ".join(parts))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_stages", description=__doc__)
    parser.add_argument("rate", type=float, help="readings/s of the load generator")
    parser.add_argument("seconds", type=float, help="how long incidents are published")
    parser.add_argument("every_s", type=float, help="seconds between incidents")
    parser.add_argument(
        "--worst", type=int, default=0, help="also print the stages of the N slowest incidents"
    )
    args = parser.parse_args(argv)
    stamps: Stamps = defaultdict(dict)
    instrument(stamps)
    with (
        MosquittoBroker() as broker,
        tempfile.TemporaryDirectory(prefix="citysense-stages-") as scratch,
        VictoriaMetrics(Path(scratch)) as victoria,
    ):
        services = Services.of(broker, victoria)
        published, opened, achieved, machine = asyncio.run(
            _measure(services, Path(scratch) / "node", args.rate, args.seconds, args.every_s)
        )
    print(f"{len(opened)} of {len(published)} incidents seen; load {achieved:,.0f} readings/s")
    print("  ".join(f"{name} {value:.2f}" for name, value in machine.items()))
    for name, values in stages(published, opened, stamps).items():
        print(
            f"{name:20} p50 {percentile(values, 50):7.1f}  p90 {percentile(values, 90):7.1f}  "
            f"p99 {percentile(values, 99):7.1f}  max {max(values):7.1f} ms"
        )
    for line in slowest(published, opened, stamps, args.worst):
        print(line)


if __name__ == "__main__":
    main()
