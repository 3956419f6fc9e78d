"""The agent with no broker in reach: it keeps sampling, and a full outbox drops visibly."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from citysense.broker import free_port
from edge import Backoff, EdgeAgent, EdgeSettings
from simulator import SimulatedStation, build_city


@pytest.fixture
def station() -> SimulatedStation:
    return SimulatedStation(build_city(seed=7).stations[0], seed=7)


async def test_a_full_outbox_drops_the_oldest_and_counts_them(
    station: SimulatedStation, caplog: pytest.LogCaptureFixture
) -> None:
    agent = EdgeAgent(
        station.station_id,
        station,
        host="127.0.0.1",
        port=free_port(),  # nothing listens: every connection attempt is refused
        sample_interval=0.02,
        max_batch=5,
        buffer_readings=20,
        backoff=Backoff(initial=0.05, maximum=0.1),
    )
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.3)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert agent.stats.readings_sampled > 20
    assert agent.backlog == 20
    assert agent.stats.dropped_readings == agent.stats.readings_sampled - 20
    assert agent.stats.link_failures >= 2
    assert agent.stats.batches_published == 0
    assert "outbox full, dropped" in caplog.text


def test_boot_epoch_comes_from_the_clock(station: SimulatedStation) -> None:
    boot = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    agent = EdgeAgent(station.station_id, station, host="h", port=1, clock=lambda: boot)
    assert agent.boot_epoch == int(boot.timestamp())
    assert EdgeAgent(station.station_id, station, host="h", port=1, boot_epoch=9).boot_epoch == 9


def test_agent_from_settings(station: SimulatedStation) -> None:
    settings = EdgeSettings(station_id=station.station_id, mqtt_port=18830, max_batch=50)
    agent = EdgeAgent.from_settings(settings, station)
    assert agent.station_id == station.station_id
    assert agent.backlog == 0


def test_intervals_must_be_positive(station: SimulatedStation) -> None:
    with pytest.raises(ValueError, match="positive"):
        EdgeAgent(station.station_id, station, host="h", port=1, sample_interval=0)
