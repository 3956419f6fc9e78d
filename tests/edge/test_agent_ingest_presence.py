"""The agent holds its data while ingest's retained presence says offline, and sends it when
ingest is back; ``citysense serve`` announces itself online and, on a clean stop, offline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from citysense.broker import MosquittoBroker
from edge import Backoff, EdgeAgent
from protocol import INGEST_STATE_TOPIC, IngestState, encode
from simulator import SimulatedStation, build_city
from tests.serve_process import api, serve, serve_env, wait_for

pytestmark = pytest.mark.integration


def presence(status: str) -> bytes:
    return encode(IngestState(status=status, ts=datetime.now(UTC)))  # type: ignore[arg-type]


async def test_the_agent_holds_while_ingest_is_away_and_sends_when_it_is_back() -> None:
    base = build_city(seed=7).stations[0]
    station_id = f"st-hold-{uuid.uuid4().hex[:8]}"
    plan = dataclasses.replace(base.plan, station_id=station_id)
    station = SimulatedStation(dataclasses.replace(base, station_id=station_id, plan=plan), 7)
    with MosquittoBroker() as broker:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(INGEST_STATE_TOPIC, presence("offline"), qos=1, retain=True)
            await client.subscribe(f"citysense/v1/stations/{station_id}/telemetry", qos=1)
            agent = EdgeAgent(
                station_id,
                station,
                host=broker.host,
                port=broker.port,
                sample_interval=0.05,
                batch_interval=0.1,
                backoff=Backoff(initial=0.05, maximum=0.2),
            )
            task = asyncio.create_task(agent.run())
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        async for message in client.messages:
                            pytest.fail(f"sent while ingest was away: {message.topic}")
                held = agent.backlog
                assert held > 50
                assert agent.stats.holds == 1
                await client.publish(INGEST_STATE_TOPIC, presence("online"), qos=1, retain=True)
                readings = 0
                async with asyncio.timeout(10):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        readings += len(json.loads(message.payload)["readings"])
                        if readings >= held:
                            break
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                agent.close()


async def test_serve_announces_its_presence(tmp_path: Path) -> None:
    with MosquittoBroker() as broker:
        env = serve_env(broker, tmp_path)

        async def retained() -> str:
            async with aiomqtt.Client(broker.host, broker.port) as client:
                await client.subscribe(INGEST_STATE_TOPIC, qos=1)
                async with asyncio.timeout(5):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        return str(json.loads(message.payload)["status"])
            raise AssertionError("no presence")

        with serve(env):
            await asyncio.to_thread(
                wait_for, lambda: api(env, "/api/v1/health")["mqtt_connected"], 30, "serve"
            )
            assert await retained() == "online"
        assert await retained() == "offline"  # a clean stop says so itself
