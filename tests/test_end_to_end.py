"""Sensor → edge → real Mosquitto → ingest → rule → case → HTTP API, in one process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from citysense.broker import MosquittoBroker
from citysense.node import Node
from edge.agent import EdgeAgent
from protocol import Channel, Reading, SensorKind, StationTopic, TelemetryBatch, encode
from simulator.city import build_city
from simulator.fleet import SimulatedStation
from simulator.incidents import CoverOpen
from tests.node_harness import node_client, serving_node

pytestmark = pytest.mark.integration
SEED = 11


@dataclass
class Running:
    node: Node
    http: httpx.AsyncClient
    simulated: SimulatedStation
    broker: MosquittoBroker

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        response.raise_for_status()
        return response.json() if "json" in response.headers["content-type"] else response.text

    async def wait_for(self, check: Any, within: float = 20.0) -> Any:
        try:
            async with asyncio.timeout(within):
                while not (result := await check()):  # noqa: ASYNC110 (polls the HTTP API)
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"{check.__name__} not true after {within}s") from None
        return result


QUICK_RULES = Path(__file__).parent / "data" / "quick_rules.yaml"


@pytest.fixture
async def running(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Running]:
    station = build_city(seed=SEED).stations[0]
    simulated = SimulatedStation(station, seed=SEED)
    agent = EdgeAgent(
        station.station_id,
        simulated,
        host=mosquitto.host,
        port=mosquitto.port,
        sample_interval=0.2,
        batch_interval=0.2,
    )
    async with (
        serving_node(
            mosquitto,
            tmp_path,
            {"edge": agent.run()},
            rules_path=QUICK_RULES,
            allowed_lateness_s=0.5,
        ) as node,
        await node_client(node) as http,
    ):
        run = Running(node, http, simulated, mosquitto)

        async def ready() -> bool:
            try:
                health = await run.get("/api/v1/health")
            except httpx.TransportError:
                return False
            return bool(health["mqtt_connected"]) and health["sensors_registered"] > 0

        await run.wait_for(ready)
        yield run


async def test_cover_incident_becomes_exactly_one_case(running: Running) -> None:
    cover = next(s for s in running.simulated.sensors() if s.kind is SensorKind.COVER)
    start = datetime.now(UTC) + timedelta(seconds=0.5)
    running.simulated.inject(CoverOpen(cover.sensor_id, start, timedelta(seconds=4.5)))

    async def cleared_case() -> Any:
        page = await running.get("/api/v1/cases", sensor_id=cover.sensor_id)
        return page if page["items"] and page["items"][0]["status"] == "cleared" else None

    page = await running.wait_for(cleared_case)
    await asyncio.sleep(1.0)  # the cover is back to normal: nothing more may open
    page = await running.get("/api/v1/cases")
    assert page["total"] == 1, page
    (case,) = page["items"]
    assert case["sensor_id"] == cover.sensor_id
    assert case["station_id"] == running.simulated.station_id
    assert case["category"] == "component"
    assert case["class_code"] == cover.class_code
    assert case["grid_code"] == cover.grid_code
    assert case["component_id"] == cover.component_id
    assert (case["lon"], case["lat"]) == (cover.lon, cover.lat)
    started = datetime.fromisoformat(case["started_at"])
    assert start <= started < start + timedelta(seconds=1)
    assert await running.get(f"/api/v1/cases/{case['id']}") == case


async def test_malformed_payload_is_rejected_with_reason_and_next_message_processed(
    running: Running,
) -> None:
    station_id = f"st-probe-{uuid.uuid4().hex[:6]}"
    topic = str(StationTopic(station_id, Channel.TELEMETRY))
    t0 = datetime.now(UTC)
    valid = TelemetryBatch(
        station_id=station_id,
        boot_epoch=1,
        seq=0,
        sent_at=t0,
        readings=[
            Reading(
                sensor_id=f"{station_id}.cover-01",
                kind=SensorKind.COVER,
                ts=t0 + timedelta(seconds=s),
                values={"tilt_deg": 80.0},
            )
            for s in range(5)
        ],
    )
    async with aiomqtt.Client(running.broker.host, running.broker.port) as client:
        await client.publish(topic, b"{this is not json", qos=1)
        await client.publish(topic, encode(valid), qos=1)

    async def probe_case() -> Any:
        page = await running.get("/api/v1/cases", station_id=station_id)
        return page if page["total"] else None

    page = await running.wait_for(probe_case)
    assert page["items"][0]["unregistered"] is True
    metrics = await running.get("/metrics")
    assert 'citysense_ingest_rejected_total{reason="not_json"} 1.0' in metrics
    letters = running.node.pipeline.dead_letters
    assert letters.path.read_text().count('"reason": "not_json"') == 1  # type: ignore[attr-defined]
