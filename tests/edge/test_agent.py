from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from citysense.broker import MosquittoBroker
from edge import Backoff, EdgeAgent, SensorDriver, utc_now
from protocol import TelemetryBatch
from simulator import SimulatedStation, build_city
from tests.edge.watch import FlakyLink, RecordingDriver, StationWatcher, watch_station

pytestmark = pytest.mark.integration


@pytest.fixture
def station() -> SimulatedStation:
    """A simulated station under a fresh id, so retained states of other tests stay out."""
    base = build_city(seed=7).stations[0]
    station_id = f"st-test-{uuid.uuid4().hex[:12]}"
    plan = dataclasses.replace(base.plan, station_id=station_id)  # its sensors are named by it
    unique = dataclasses.replace(base, station_id=station_id, plan=plan)
    return SimulatedStation(unique, seed=7)


def _fast_agent(
    station_id: str,
    driver: SensorDriver,
    host: str,
    port: int,
    clock: Callable[[], datetime] = utc_now,
) -> EdgeAgent:
    """Samples at 20 Hz, publishes at 10 Hz and retries a lost link within 0.2 s."""
    return EdgeAgent(
        station_id,
        driver,
        host=host,
        port=port,
        sample_interval=0.05,
        batch_interval=0.1,
        clock=clock,
        backoff=Backoff(initial=0.05, maximum=0.2),
    )


@contextlib.asynccontextmanager
async def running(agent: EdgeAgent) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(agent.run(), name="agent-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _statuses(watcher: StationWatcher) -> list[str]:
    return [state.status for state, _ in watcher.states]


def _seqs(watcher: StationWatcher) -> list[int]:
    return [batch.seq for batch in watcher.batches]


async def test_agent_announces_itself_publishes_batches_and_says_goodbye(
    mosquitto: MosquittoBroker, station: SimulatedStation
) -> None:
    sid = station.station_id
    agent = _fast_agent(sid, station, mosquitto.host, mosquitto.port)
    async with watch_station(mosquitto.host, mosquitto.port, sid) as watcher:
        async with running(agent):
            await watcher.until(lambda w: len(w.batches) >= 5)
        await watcher.until(lambda w: _statuses(w)[-1:] == ["offline"])

    birth = watcher.states[0][0]
    assert birth.status == "online"
    assert birth.boot_epoch == agent.boot_epoch
    assert birth.sensors == list(station.sensors())
    assert _seqs(watcher) == list(range(len(watcher.batches)))
    assert {b.boot_epoch for b in watcher.batches} == {agent.boot_epoch}
    sensor_ids = {s.sensor_id for s in station.sensors()}
    assert {r.sensor_id for r in watcher.readings} == sensor_ids
    assert all(r.ts.utcoffset() is not None for r in watcher.readings)
    # the last batch may have reached us before its PUBACK reached the cancelled agent
    assert agent.stats.batches_published >= len(watcher.batches) - 1
    assert agent.stats.dropped_readings == 0


async def test_birth_and_death_are_retained(
    mosquitto: MosquittoBroker, station: SimulatedStation
) -> None:
    sid = station.station_id
    agent = _fast_agent(sid, station, mosquitto.host, mosquitto.port)
    async with running(agent):
        async with watch_station(mosquitto.host, mosquitto.port, sid) as early:
            await early.until(lambda w: len(w.batches) >= 1)
        async with watch_station(mosquitto.host, mosquitto.port, sid) as late:
            await late.until(lambda w: len(w.states) >= 1)
    assert late.states[0][0].status == "online"
    assert late.states[0][1], "a late subscriber gets the birth as a retained message"
    assert late.states[0][0].sensors == list(station.sensors())

    async with watch_station(mosquitto.host, mosquitto.port, sid) as after:
        await after.until(lambda w: len(w.states) >= 1)
    state, retained = after.states[0]
    assert (state.status, retained, state.boot_epoch) == ("offline", True, agent.boot_epoch)


async def test_readings_taken_before_the_broker_is_reachable_are_sent_on_connect(
    mosquitto: MosquittoBroker, station: SimulatedStation
) -> None:
    sid = station.station_id
    link = FlakyLink(mosquitto.host, mosquitto.port)
    agent = _fast_agent(sid, station, link.host, link.port)
    async with watch_station(mosquitto.host, mosquitto.port, sid) as watcher, running(agent):
        await asyncio.sleep(0.4)
        assert agent.stats.link_failures >= 1
        backlog_before = datetime.now(UTC)
        await link.restore()
        await watcher.until(lambda w: len(w.batches) >= 1)
        await link.cut()

    first = watcher.batches[0]
    assert first.seq == 0
    assert min(r.ts for r in first.readings) < backlog_before
    assert len(first.readings) >= 5 * len(station.sensors())


async def test_a_cut_link_loses_nothing_and_resumes_the_sequence(
    mosquitto: MosquittoBroker, station: SimulatedStation
) -> None:
    sid = station.station_id
    link = FlakyLink(mosquitto.host, mosquitto.port)
    driver = RecordingDriver(station)
    agent = _fast_agent(sid, driver, link.host, link.port)
    await link.restore()
    async with watch_station(mosquitto.host, mosquitto.port, sid) as watcher, running(agent):
        await watcher.until(lambda w: len(w.batches) >= 3)
        await link.cut()
        await watcher.until(lambda w: _statuses(w)[-1] == "offline")  # the broker's last will
        await asyncio.sleep(0.4)
        restored_at = datetime.now(UTC)
        await link.restore()
        await watcher.until(lambda w: max(r.ts for r in w.readings) > restored_at)
        # batches need not come in time order (a sensor in alarm goes first): read on until
        # every reading up to the newest one received is there, or time out (a loss fails)
        await watcher.until(lambda w: not _missing(w, driver, station))
        await link.cut()

    assert _statuses(watcher) == ["online", "offline", "online"]
    assert agent.stats.connects == 2
    _assert_nothing_lost(watcher, driver, station)


def _missing(
    watcher: StationWatcher, driver: RecordingDriver, sensors: SensorDriver
) -> set[tuple[str, datetime]]:
    """Readings sampled up to the newest one received that were not received."""
    received = {(r.sensor_id, r.ts) for r in watcher.readings}
    newest = max(ts for _, ts in received)
    expected = {
        (sensor.sensor_id, ts)
        for ts in driver.read_at
        if ts <= newest
        for sensor in sensors.sensors()
    }
    return expected - received


def _assert_nothing_lost(
    watcher: StationWatcher, driver: RecordingDriver, sensors: SensorDriver
) -> None:
    by_seq: dict[int, TelemetryBatch] = {}
    for batch in watcher.batches:
        previous = by_seq.setdefault(batch.seq, batch)
        assert previous.readings == batch.readings, "a re-sent batch must carry the same readings"
    assert sorted(by_seq) == list(range(len(by_seq)))
    assert not _missing(watcher, driver, sensors)


async def test_device_timestamps_come_from_the_agent_clock_in_utc(
    mosquitto: MosquittoBroker, station: SimulatedStation
) -> None:
    beijing = timezone(timedelta(hours=8))
    ticks = itertools.count()

    def clock() -> datetime:  # a station clock that runs ten times fast, in local time
        return datetime(2026, 7, 1, 8, 0, tzinfo=beijing) + timedelta(seconds=next(ticks) / 10)

    sid = station.station_id
    agent = _fast_agent(sid, station, mosquitto.host, mosquitto.port, clock)
    async with watch_station(mosquitto.host, mosquitto.port, sid) as watcher, running(agent):
        await watcher.until(lambda w: len(w.batches) >= 2)

    assert agent.boot_epoch == int(datetime(2026, 7, 1, 0, 0, tzinfo=UTC).timestamp())
    stamps = sorted({r.ts for r in watcher.readings})
    assert stamps[0] > datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert stamps[-1] < datetime(2026, 7, 1, 0, 5, tzinfo=UTC)
    assert all(ts.utcoffset() == timedelta(0) for ts in stamps)
