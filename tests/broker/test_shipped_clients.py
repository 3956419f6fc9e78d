"""The shipped clients connect to the production broker with what `citysense provision` wrote:
the edge agent over TLS from its station's mqtt.env, ingest on the loopback listener from its
service's mqtt.env; a batch flows from one to the other."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from datetime import datetime
from pathlib import Path, PurePosixPath

import pytest

from citysense.provision import provision, station_account
from edge import Backoff, EdgeAgent, EdgeSettings
from ingest.consumer import IngestConsumer
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from ingest.settings import IngestSettings
from protocol import TelemetryBatch
from rules import RuleEngine, parse_rules
from rules.schema import DEFAULT_RULES_FILE
from simulator import SimulatedStation, build_city
from tests.broker.conftest import ProductionBroker, running_broker

pytestmark = pytest.mark.integration

STATION = "st-a"


def simulated(station_id: str) -> SimulatedStation:
    base = build_city(seed=7).stations[0]
    plan = dataclasses.replace(base.plan, station_id=station_id)
    return SimulatedStation(dataclasses.replace(base, station_id=station_id, plan=plan), seed=7)


@dataclasses.dataclass
class CountingSink(MemorySink):
    wanted: int = 1
    filled: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def write_batch(self, batch: TelemetryBatch, received_at: datetime) -> None:
        await super().write_batch(batch, received_at)
        if len(self.batches) >= self.wanted:
            self.filled.set()


@pytest.fixture
def installed(pki: Path, tmp_path: Path) -> Path:
    """A copy of the provisioned tree whose station bundle names its own folder and the
    test broker's TLS port, as `provision station --install-dir --mqtt-host` does on site."""
    root = tmp_path / "pki"
    shutil.copytree(pki, root)
    return root


async def test_edge_agent_and_ingest_connect_with_provisioned_credentials(
    installed: Path, tmp_path: Path
) -> None:
    with running_broker(installed, tmp_path / "broker") as production:
        bundle = installed / "stations" / STATION
        provision(
            installed,
            station_account(
                STATION,
                install_dir=PurePosixPath(bundle),
                broker_host="127.0.0.1",
                broker_port=production.tls_port,
            ),
        )
        edge_settings = EdgeSettings(
            _env_file=bundle / "mqtt.env",  # type: ignore[call-arg]
            sample_interval_s=0.05,
            batch_interval_s=0.1,
        )
        ingest_settings = IngestSettings(
            _env_file=installed / "services" / "ingest" / "mqtt.env",  # type: ignore[call-arg]
            mqtt_port=production.local_port,
        )
        assert edge_settings.mqtt_auth.uses_tls
        assert edge_settings.mqtt_port == production.tls_port
        assert ingest_settings.mqtt_auth.username == "citysense-ingest"
        await _batch_flows(production, edge_settings, ingest_settings)


async def _batch_flows(
    production: ProductionBroker, edge_settings: EdgeSettings, ingest_settings: IngestSettings
) -> None:
    sink = CountingSink(wanted=3)
    pipeline = IngestPipeline(
        engine=RuleEngine(parse_rules(DEFAULT_RULES_FILE.read_text())),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[sink],
    )
    consumer = IngestConsumer(
        pipeline,
        host=ingest_settings.mqtt_host,
        port=ingest_settings.mqtt_port,
        client_id=ingest_settings.client_id,
        auth=ingest_settings.mqtt_auth,
    )
    agent = EdgeAgent.from_settings(
        edge_settings, simulated(STATION), backoff=Backoff(initial=0.05, maximum=0.2)
    )
    async with asyncio.TaskGroup() as tasks:
        consuming = tasks.create_task(consumer.run(), name="ingest-under-test")
        await asyncio.wait_for(consumer.connected.wait(), 5)
        publishing = tasks.create_task(agent.run(), name="agent-under-test")
        try:
            await asyncio.wait_for(sink.filled.wait(), 10)
        finally:
            publishing.cancel()
            consuming.cancel()
    assert {batch.station_id for batch in sink.batches} == {STATION}
    assert agent.stats.connects == 1
    assert agent.stats.link_failures == 0
    assert pipeline.registry.station(STATION) is not None, production.log()
