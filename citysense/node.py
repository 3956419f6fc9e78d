"""One node: ingest + rules + center behind one HTTP server (``citysense serve``), with the
delivery of case events (webhooks, MQTT) and the acknowledgement deadlines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from center import (
    Accounts,
    AccountStore,
    CaseBroadcaster,
    CaseService,
    CaseStore,
    CenterServer,
    CenterSettings,
    create_app,
    create_engine,
    migrate,
)
from center.auth import SignInLimiter
from center.delivery import (
    ConfirmedPublisher,
    CursorStore,
    MqttCaseEvents,
    Relay,
    RetryPolicy,
    WebhookChannel,
)
from center.delivery.relay import Channel, default_owner
from center.metrics import CaseCollector, DeliveryCollector
from center.retention import Retention, RetentionPolicy
from center.views import HealthCheck
from citysense.runtime import runtime_tasks, tune
from ingest.checkpoint import keep_saved, load, replay, save_last
from ingest.consumer import IngestConsumer
from ingest.dead_letters import JsonlDeadLetters
from ingest.pipeline import IngestPipeline
from ingest.registry import StationRegistry
from ingest.rules_control import RulesControl
from ingest.settings import IngestSettings
from ingest.sinks.recorder import read_recorded
from ingest.sinks.settings import SinkSettings, build_recorder, build_store
from rules import DEFAULT_RULES_FILE, ClockPolicy, parse_rules

log = logging.getLogger(__name__)


@dataclass
class Node:
    pipeline: IngestPipeline
    consumer: IngestConsumer
    service: CaseService
    app: FastAPI
    center: CenterSettings
    ingest: IngestSettings
    rules: RulesControl
    relays: list[Relay] = field(default_factory=list)
    accounts: Accounts = field(kw_only=True)
    """Users, tokens, sessions (``center.auth``): tests sign in through it."""

    def health(self) -> Mapping[str, object]:
        """``delivery``: each subscriber's state, cursor and lag; a stopped one (a permanent
        refusal) with the event and the reason: ``GET /api/v1/health`` (the public /healthz
        says only the status and which checks are ok). Detail only: both stay 200 for it (the
        node is fine; restarting it does not make a receiver take an event)."""
        body: dict[str, object] = {
            "mqtt_connected": self.consumer.connected.is_set(),
            **self.pipeline.registry.counts(),
        }
        if self.relays:
            body["delivery"] = {relay.name: relay.status.health() for relay in self.relays}
        return body

    def server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app, host=self.center.host, port=self.center.port, log_level="warning"
        )
        return CenterServer(config, self.service.broadcaster)


@asynccontextmanager
async def build_node(
    ingest: IngestSettings, center: CenterSettings, sinks: SinkSettings | None = None
) -> AsyncIterator[Node]:
    """Migrate the case store, wire the parts, restore ingest's checkpoint and replay its
    journal; closes the sinks and the database engine on exit."""
    sinks = sinks or SinkSettings()
    await migrate(center.database_url)
    engine = create_engine(center.database_url)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        accounts = Accounts(
            AccountStore(engine),
            limiter=SignInLimiter(
                per_name=center.signin_max_failures_per_name,
                per_address=center.signin_max_failures_per_address,
                window_s=center.signin_window_s,
            ),
            session_ttl=center.session_ttl,
        )
        if center.production:
            await accounts.check_production()
        cases = CaseStore(
            engine, late_after=center.detected_late_after, escalation=center.escalation.policy()
        )
        stack.callback(cases.close)  # before the engine's dispose: its writer thread
        service = CaseService(cases, CaseBroadcaster())
        await service.follow_once()  # the live stream carries events from here on
        rules_file = ingest.rules_path or DEFAULT_RULES_FILE
        rules_text = rules_file.read_text(encoding="utf-8")
        rule_set = parse_rules(rules_text, str(rules_file))
        clock = ClockPolicy(allowed_lateness=ingest.allowed_lateness_s)
        checkpoint = load(rule_set, ingest.snapshot_path, clock, ingest.gap_policy())
        store = build_store(sinks)
        journal = build_recorder(sinks)
        for closing in (store, journal):
            if closing is not None:
                stack.push_async_callback(closing.aclose)
        dead_letters = JsonlDeadLetters(
            ingest.dead_letter_path,
            max_bytes=ingest.dead_letter_max_bytes,
            keep=ingest.dead_letter_keep,
        )
        stack.callback(dead_letters.close)
        pipeline = IngestPipeline(
            engine=checkpoint.engine,
            dedup=checkpoint.dedup,
            gaps=checkpoint.gaps,
            alerts=service,
            dead_letters=dead_letters,
            sinks=[store] if store is not None else [],
            registry=StationRegistry(silent_after=timedelta(seconds=ingest.silent_after_s)),
            journal=journal,
        )
        if journal is not None and sinks.recorder_dir is not None:
            records = read_recorded(sinks.recorder_dir, since=checkpoint.position)
            replayed = await replay(pipeline, records)
            log.info("replayed %d journal records after the checkpoint", replayed)
        if ingest.snapshot_path is not None:  # runs before the sinks close
            stack.push_async_callback(save_last, pipeline, ingest.snapshot_path)
        checkpoint.engine.adopt_open(await service.store.open_incidents())
        consumer = IngestConsumer(
            pipeline,
            host=ingest.mqtt_host,
            port=ingest.mqtt_port,
            client_id=ingest.client_id,
            max_group=ingest.max_group,
            auth=ingest.mqtt_auth,
        )
        pipeline.metrics.registry.register(CaseCollector(service))
        http = httpx.AsyncClient(follow_redirects=False)
        stack.push_async_callback(http.aclose)
        cursors = CursorStore(engine)
        stack.callback(cursors.close)
        relays = delivery_relays(center, service, cursors, consumer.publisher, http)
        pipeline.metrics.registry.register(DeliveryCollector(relays))
        history = (
            None
            if ingest.snapshot_path is None
            else ingest.snapshot_path.with_name("rules.history.jsonl")
        )
        rules = RulesControl(pipeline, rules_text, ingest.rules_path, history_path=history)
        node = Node(
            pipeline, consumer, service, FastAPI(), center, ingest, rules, relays, accounts=accounts
        )
        node.app = create_app(
            service,
            auth=accounts,
            secure_cookies=center.production,
            health=node.health,
            metrics=pipeline.metrics.render,
            checks=_health_checks(pipeline, consumer, service, sinks.victoria_url),
            registry=pipeline.registry,
            rejects=dead_letters,
            rules=rules,
        )
        yield node


def delivery_relays(
    center: CenterSettings,
    service: CaseService,
    cursors: CursorStore,
    publisher: ConfirmedPublisher,
    http: httpx.AsyncClient,
) -> list[Relay]:
    """One relay per webhook subscriber, and one for the MQTT topic (unless turned off)."""
    settings = center.delivery
    channels: list[Channel] = [WebhookChannel(s, http) for s in center.webhooks]
    if settings.mqtt:
        channels.append(
            MqttCaseEvents(publisher, start=settings.mqtt_start, timeout_s=settings.mqtt_timeout_s)
        )
    policy = RetryPolicy(
        initial_s=settings.backoff_initial_s,
        max_s=settings.backoff_max_s,
        retry_after_max_s=settings.retry_after_max_s,
        poll_s=settings.poll_s,
        lease_s=settings.lease_s,
        cursor_every_s=settings.cursor_every_s,
    )
    broadcaster = service.broadcaster
    return [
        Relay(
            channel,
            service.store,
            cursors,
            broadcaster.wakeup(),
            policy=policy,
            owner=default_owner(settings.node),
        )
        for channel in channels
    ]


def _health_checks(
    pipeline: IngestPipeline,
    consumer: IngestConsumer,
    service: CaseService,
    store_url: str | None,
) -> dict[str, HealthCheck]:
    async def broker() -> tuple[bool, str]:
        up = consumer.connected.is_set()
        return up, "connected" if up else "not connected"

    async def database() -> tuple[bool, str]:
        await service.store.ping()
        return True, "answers"

    async def ingest() -> tuple[bool, str]:
        waiting = sorted(pipeline.stalled)
        return not waiting, f"stalled on {', '.join(waiting)}" if waiting else "flowing"

    checks: dict[str, HealthCheck] = {"broker": broker, "database": database, "ingest": ingest}
    if store_url is not None:
        url = store_url

        async def timeseries() -> tuple[bool, str]:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"{url}/health")
            return answer.status_code == 200, f"HTTP {answer.status_code}"

        checks["timeseries"] = timeseries
    return checks


async def serve_until_stopped(
    server: uvicorn.Server, tasks: Mapping[str, Coroutine[Any, Any, None]]
) -> None:
    """Run the HTTP server and the named tasks; when the server stops (Ctrl-C), stop them all."""
    async with asyncio.TaskGroup() as group:
        running = [group.create_task(coro, name=name) for name, coro in tasks.items()]
        await server.serve()
        for task in running:
            task.cancel()


def node_retention(node: Node) -> Retention:
    """What the retention settings let go: closed cases (the center's setting) and dead
    letters (ingest's)."""
    policy = RetentionPolicy.from_days(
        node.center.closed_case_retention_days, node.ingest.dead_letter_retention_days
    )
    letters = node.pipeline.dead_letters
    expiring = letters if isinstance(letters, JsonlDeadLetters) else None

    def delivered_through() -> int | None:  # 0 until a relay has read its cursor: keep all
        return min((relay.status.cursor for relay in node.relays), default=None)

    return Retention(
        node.service.store, policy, dead_letters=expiring, delivered_through=delivered_through
    )


def node_tasks(node: Node) -> dict[str, Coroutine[Any, Any, None]]:
    """The node's background work: the MQTT consumer, the checkpoints, the rules file watch,
    the delivery of case events, the acknowledgement deadlines and following the case event
    log for other processes' events."""
    tasks = {"ingest": node.consumer.run()}
    tasks["retention"] = node_retention(node).run(timedelta(seconds=node.center.retention_every_s))
    for relay in node.relays:
        tasks[f"delivery {relay.name}"] = relay.run()
    tasks["deadlines"] = node.service.watch_deadlines(node.center.escalation.check_every_s)
    tasks["case-log"] = node.service.follow_log(node.center.follow_s)
    if node.rules.path is not None:
        tasks["rules-file"] = node.rules.watch()
    if node.ingest.snapshot_path is not None:
        tasks["checkpoints"] = keep_saved(
            node.pipeline, node.ingest.snapshot_path, node.ingest.snapshot_every_s
        )
    return tasks


async def run_node(node: Node) -> None:
    tune()
    await serve_until_stopped(node.server(), node_tasks(node) | runtime_tasks())
