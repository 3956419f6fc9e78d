"""A long outage with a small outbox: what is evicted is counted, announced in a gap report
of the same size, and the alarm readings (a cover opened during the outage) survive and
arrive first. The real agent, a real Mosquitto that comes up only after the outage."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import aiomqtt
import pytest

from citysense.broker import MosquittoBroker
from edge import Backoff, EdgeAgent, utc_now
from edge.outbox import OutboxLimits
from rules import parse_rules
from simulator import CoverOpen, SimulatedStation, build_city
from tests.edge.watch import FlakyLink
from tests.serve_process import QUICK_RULES

OPEN_DEG = 50
OPEN_ONLY = QUICK_RULES.read_text(encoding="utf-8").replace("above: 15", f"above: {OPEN_DEG}")
"""The quick cover rule at 50°: the injected cover (75°) trips it, the loose covers the simulator
rocks (8-40°) never do, so the urgent readings of the outage stay within the outbox's bound."""

pytestmark = pytest.mark.integration


async def test_a_long_outage_keeps_the_alarm_and_reports_what_it_dropped() -> None:
    assert f"above: {OPEN_DEG}" in OPEN_ONLY
    base = build_city(seed=7).stations[0]
    station_id = f"st-out-{uuid.uuid4().hex[:8]}"
    plan = dataclasses.replace(base.plan, station_id=station_id)
    station = SimulatedStation(dataclasses.replace(base, station_id=station_id, plan=plan), 7)
    cover = next(s.sensor_id for s in station.sensors() if s.kind.value == "cover")
    station.inject(CoverOpen(cover, utc_now() + timedelta(seconds=0.5), timedelta(minutes=5)))
    received: list[tuple[str, dict[str, object]]] = []
    with MosquittoBroker() as broker:
        link = FlakyLink(broker.host, broker.port)  # cut: nothing listens on its port yet
        agent = EdgeAgent(
            station_id,
            station,
            host=link.host,
            port=link.port,
            sample_interval=0.05,
            batch_interval=0.1,
            max_batch=50,
            outbox_limits=OutboxLimits(max_readings=200),
            backoff=Backoff(initial=0.05, maximum=0.2),
            alarm_rules=parse_rules(OPEN_ONLY),
        )
        task = asyncio.create_task(agent.run())
        try:
            async with aiomqtt.Client(broker.host, broker.port) as client:
                await client.subscribe(f"citysense/v1/stations/{station_id}/#", qos=1)
                await asyncio.sleep(6.0)  # the cover is open for 5.5 s of it, held 3 s at the edge
                assert agent.stats.dropped_readings > 0
                alarm_in_outage = agent.stats.alarm_readings
                assert alarm_in_outage > 0
                reconnected = utc_now()
                await link.restore()
                settled: float | None = None  # a second after the backlog is sent
                async with asyncio.timeout(15):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        body = json.loads(message.payload)
                        received.append((str(message.topic).rsplit("/", 1)[1], body))
                        now = asyncio.get_running_loop().time()
                        reported = any(topic == "gaps" for topic, _ in received)
                        if settled is None and agent.backlog < 50 and reported:
                            settled = now + 1.0
                        if settled is not None and now > settled:
                            break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            agent.close()
            await link.cut()

    gaps = [body for topic, body in received if topic == "gaps"]
    assert sum(g["readings"] for g in gaps) == agent.stats.dropped_readings  # type: ignore[misc]
    assert {g["reason"] for g in gaps} == {"bytes"}
    batches = [body for topic, body in received if topic == "telemetry"]
    outage = [b for b in batches if all(_ts(r) < reconnected for r in _readings(b))]
    alarm = [any(_open(r, cover) for r in _readings(b)) for b in outage]
    # other covers that rocked past the threshold during the outage are urgent too (a sensor
    # once urgent stays so until the outbox drains): every batch may be an alarm batch
    first_routine = alarm.index(False) if False in alarm else len(alarm)
    assert first_routine > 0, "the alarm batches of the outage go first"
    assert not any(alarm[first_routine:]), alarm  # then the routine ones
    sent_alarm = sum(
        _open(r, cover) and _ts(r) < reconnected for b in batches for r in _readings(b)
    )
    assert sent_alarm >= alarm_in_outage  # none of them evicted


def _readings(batch: dict[str, object]) -> list[dict[str, Any]]:
    readings = batch["readings"]
    assert isinstance(readings, list)
    return readings


def _ts(reading: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(reading["ts"])


def _open(reading: dict[str, Any], cover: str) -> bool:
    return bool(reading["sensor_id"] == cover and reading["values"]["tilt_deg"] > OPEN_DEG)
