"""Remote config against a real Mosquitto: pushed, applied, answered on ``ack``; refused with
the reason; applied mid-way through an outage backlog without losing a reading; kept across a
restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiomqtt
import pytest
from typer.testing import CliRunner

from citysense.broker import MosquittoBroker
from citysense.cli import app
from citysense.cli_config import push_config
from edge import Backoff, EdgeAgent
from protocol import (
    Channel,
    ConfigAck,
    Reading,
    StationTopic,
    decode_any_ack,
    decode_telemetry,
)
from simulator import SimulatedStation, build_city
from tests.edge.watch import FlakyLink, RecordingDriver

pytestmark = pytest.mark.integration


def _station() -> SimulatedStation:
    base = build_city(seed=7).stations[0]
    station_id = f"st-cfg-{uuid.uuid4().hex[:10]}"
    plan = dataclasses.replace(base.plan, station_id=station_id)
    return SimulatedStation(dataclasses.replace(base, station_id=station_id, plan=plan), seed=7)


def _agent(
    driver: RecordingDriver, station_id: str, host: str, port: int, **kw: object
) -> EdgeAgent:
    return EdgeAgent(
        station_id, driver, host=host, port=port, batch_interval=0.1,
        backoff=Backoff(initial=0.05, maximum=0.2), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running(agent: EdgeAgent) -> AsyncIterator[None]:
    task = asyncio.create_task(agent.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        agent.close()


async def _until(condition: object, within_s: float = 5.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polls the agent's counters
            await asyncio.sleep(0.02)


async def _reads_in(driver: RecordingDriver, seconds: float) -> int:
    before = len(driver.read_at)
    await asyncio.sleep(seconds)
    return len(driver.read_at) - before


async def _push_raw(broker: MosquittoBroker, station_id: str, body: dict[str, object]) -> ConfigAck:
    """Publish a config as given (also invalid ones) and return the station's answer to it."""
    ack_topic = StationTopic(station_id, Channel.ACK)
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(str(ack_topic), qos=1)
        topic = str(StationTopic(station_id, Channel.CONFIG))
        await client.publish(topic, json.dumps(body).encode(), qos=1, retain=True)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                ack = decode_any_ack(ack_topic, message.payload)
                if isinstance(ack, ConfigAck):
                    return ack
    raise AssertionError("no answer")


async def test_a_pushed_config_is_acknowledged_and_its_sample_interval_applies(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    station = _station()
    driver = RecordingDriver(station)
    agent = _agent(driver, station.station_id, mosquitto.host, mosquitto.port, sample_interval=2.0)
    config_file = tmp_path / "fast.toml"
    config_file.write_text("sample_interval_s = 0.05\n[thresholds.cover-open]\ntilt_deg = 12.0\n")
    async with running(agent):
        await _until(lambda: agent.stats.connects == 1)
        assert await _reads_in(driver, 0.5) <= 1  # every 2 s
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["config", "push", station.station_id, str(config_file),
             "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--version", "5"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        answer = json.loads(result.output)
        assert (answer["status"], answer["config_version"]) == ("applied", 5)
        assert agent.config_version == 5
        assert agent.stats.configs_applied == 1
        assert await _reads_in(driver, 0.5) >= 6  # every 0.05 s, at once (not after 2 s)
        again = await push_config(
            mosquitto.host, mosquitto.port, station.station_id, {"sample_interval_s": 1},
            version=5, answer_within_s=5,
        )  # fmt: skip
        assert again[1] is not None
        assert again[1].status == "current"
        assert agent.config_version == 5


async def test_an_invalid_config_is_rejected_with_the_reason_and_the_old_one_kept(
    mosquitto: MosquittoBroker,
) -> None:
    station = _station()
    sid = station.station_id
    driver = RecordingDriver(station)
    agent = _agent(driver, sid, mosquitto.host, mosquitto.port, sample_interval=0.05)
    good: dict[str, object] = {"v": 1, "station_id": sid, "config_version": 1}
    good["sample_interval_s"] = 0.1
    async with running(agent):
        await _until(lambda: agent.stats.connects == 1)
        assert (await _push_raw(mosquitto, sid, good)).status == "applied"
        refusals: list[tuple[dict[str, object], str]] = [
            ({"thresholds": {"no-such-rule": {"tilt_deg": 3}}}, "unknown rule no-such-rule"),
            ({"thresholds": {"cover-open": {"gas_ppm": 3}}}, "no above/below limit on 'gas_ppm'"),
            ({"sample_interval_s": -1}, "sample_interval_s"),
            ({"config_version": "2"}, "config_version"),
            ({"config_version": 0}, "config_version"),
        ]
        for change, reason in refusals:
            ack = await _push_raw(mosquitto, sid, {**good, "config_version": 2, **change})
            assert ack.status == "rejected", change
            assert ack.reason is not None
            assert reason in ack.reason, (change, ack.reason)
            assert ack.config_version == 1
            assert agent.config_version == 1
        assert agent.stats.configs_rejected == len(refusals)
        assert 3 <= await _reads_in(driver, 0.5) <= 7  # still every 0.1 s


class KeepingDriver(RecordingDriver):
    """Remembers every reading it produced."""

    def __init__(self, inner: SimulatedStation) -> None:
        super().__init__(inner)
        self.produced: list[tuple[str, str]] = []

    def read(self, ts: datetime) -> list[Reading]:
        readings = super().read(ts)
        self.produced += [(r.sensor_id, r.ts.isoformat()) for r in readings]
        return readings


async def test_the_outage_backlog_is_delivered_whole_across_a_config_change() -> None:
    station = _station()
    sid = station.station_id
    driver = KeepingDriver(station)
    with MosquittoBroker() as broker:
        link = FlakyLink(broker.host, broker.port)
        await link.restore()
        agent = _agent(driver, sid, link.host, link.port, sample_interval=0.02, max_batch=20)
        telemetry = StationTopic(sid, Channel.TELEMETRY)
        order: list[str] = []
        received: list[tuple[str, str]] = []
        async with running(agent), aiomqtt.Client(broker.host, broker.port) as watcher:
            await watcher.subscribe(f"citysense/v1/stations/{sid}/#", qos=1)
            await _until(lambda: agent.stats.connects == 1)
            await link.cut()
            await asyncio.sleep(1.0)
            queued = agent.backlog
            assert queued > 100
            body = {"v": 1, "station_id": sid, "config_version": 9, "sample_interval_s": 0.5,
                    "thresholds": {"cover-open": {"tilt_deg": 12.0}}}  # fmt: skip
            async with aiomqtt.Client(broker.host, broker.port) as center:
                topic = str(StationTopic(sid, Channel.CONFIG))
                await center.publish(topic, json.dumps(body).encode(), qos=1, retain=True)
            before_restore = list(driver.produced)
            await link.restore()
            # a publish in flight when the link was cut ends only at aiomqtt's 10 s timeout
            async with asyncio.timeout(25):
                async for message in watcher.messages:
                    channel = str(message.topic).rsplit("/", 1)[1]
                    order.append(channel)
                    assert isinstance(message.payload, bytes)
                    if channel == "telemetry":
                        batch = decode_telemetry(telemetry, message.payload)
                        received += [(r.sensor_id, r.ts.isoformat()) for r in batch.readings]
                    if "ack" in order and set(before_restore) <= set(received):
                        break
        await link.cut()
    assert agent.config_version == 9
    assert agent.stats.configs_applied == 1
    assert agent.stats.dropped_readings == 0
    assert len(before_restore) >= queued
    assert len(received) == len(set(received)), "a reading arrived twice"
    assert set(before_restore) <= set(received), "a queued reading was lost"
    assert set(received) <= set(driver.produced)
    ack_at = order.index("ack")
    assert "telemetry" in order[ack_at + 1 :], "the config was applied before the backlog was out"


async def test_a_restart_keeps_the_applied_config(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    station = _station()
    sid = station.station_id
    driver = RecordingDriver(station)
    agent = _agent(
        driver, sid, mosquitto.host, mosquitto.port, sample_interval=2.0, state_dir=tmp_path
    )
    body = {"v": 1, "station_id": sid, "config_version": 3, "sample_interval_s": 0.05}
    async with running(agent):
        await _until(lambda: agent.stats.connects == 1)
        assert (await _push_raw(mosquitto, sid, body)).status == "applied"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as center:  # the broker forgets it
        await center.publish(str(StationTopic(sid, Channel.CONFIG)), b"", qos=1, retain=True)
    restarted = _agent(
        driver, sid, mosquitto.host, mosquitto.port, sample_interval=2.0, state_dir=tmp_path
    )
    assert restarted.config_version == 3
    async with running(restarted):
        assert await _reads_in(driver, 0.5) >= 6
        assert (await _push_raw(mosquitto, sid, body)).status == "current"
    fresh = _agent(driver, sid, mosquitto.host, mosquitto.port, state_dir=tmp_path / "other")
    assert fresh.config_version == 0
    fresh.close()
