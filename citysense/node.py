"""One node: ingest + rules + center behind one HTTP server (``citysense serve``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from center import (
    CaseBroadcaster,
    CaseService,
    CaseStore,
    CenterServer,
    CenterSettings,
    create_app,
    create_engine,
    migrate,
)
from center.metrics import CaseCollector
from ingest.consumer import IngestConsumer
from ingest.dead_letters import JsonlDeadLetters
from ingest.pipeline import IngestPipeline
from ingest.rules_state import keep_saved, load_engine
from ingest.settings import IngestSettings
from rules import DEFAULT_RULES_FILE, ClockPolicy, load_rules


@dataclass
class Node:
    pipeline: IngestPipeline
    consumer: IngestConsumer
    service: CaseService
    app: FastAPI
    center: CenterSettings
    ingest: IngestSettings

    def health(self) -> Mapping[str, object]:
        return {
            "mqtt_connected": self.consumer.connected.is_set(),
            **self.pipeline.registry.counts(),
        }

    def server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app, host=self.center.host, port=self.center.port, log_level="warning"
        )
        return CenterServer(config, self.service.broadcaster)


@asynccontextmanager
async def build_node(ingest: IngestSettings, center: CenterSettings) -> AsyncIterator[Node]:
    """Migrate the case store and wire the parts; disposes the database engine on exit."""
    await migrate(center.database_url)
    engine = create_engine(center.database_url)
    try:
        service = CaseService(CaseStore(engine), CaseBroadcaster())
        rule_set = load_rules(ingest.rules_path or DEFAULT_RULES_FILE)
        clock = ClockPolicy(allowed_lateness=ingest.allowed_lateness_s)
        rules_engine = load_engine(rule_set, ingest.snapshot_path, clock)
        rules_engine.adopt_open(await service.store.open_incidents())
        pipeline = IngestPipeline(
            engine=rules_engine,
            alerts=service,
            dead_letters=JsonlDeadLetters(ingest.dead_letter_path),
        )
        consumer = IngestConsumer(
            pipeline, host=ingest.mqtt_host, port=ingest.mqtt_port, client_id=ingest.client_id
        )
        pipeline.metrics.registry.register(CaseCollector(service))
        node = Node(pipeline, consumer, service, FastAPI(), center, ingest)
        node.app = create_app(service, health=node.health, metrics=pipeline.metrics.render)
        yield node
    finally:
        await engine.dispose()


async def serve_until_stopped(
    server: uvicorn.Server, tasks: Mapping[str, Coroutine[Any, Any, None]]
) -> None:
    """Run the HTTP server and the named tasks; when the server stops (Ctrl-C), stop them all."""
    async with asyncio.TaskGroup() as group:
        running = [group.create_task(coro, name=name) for name, coro in tasks.items()]
        await server.serve()
        for task in running:
            task.cancel()


def node_tasks(node: Node) -> dict[str, Coroutine[Any, Any, None]]:
    """The node's background work: the MQTT consumer and the rules-state snapshots."""
    tasks = {"ingest": node.consumer.run()}
    if node.ingest.snapshot_path is not None:
        tasks["rules-snapshots"] = keep_saved(
            node.pipeline, node.ingest.snapshot_path, node.ingest.snapshot_every_s
        )
    return tasks


async def run_node(node: Node) -> None:
    await serve_until_stopped(node.server(), node_tasks(node))
