"""A real node (``citysense serve``) delivering case events to a webhook receiver is killed
(kill -9) mid-delivery: after the restart, delivery resumes from the cursor in the database.
At least once: every event arrives, in id order, and what arrives twice is exactly what the
receiver got after the cursor the node had written (it writes it every ``CURSOR_EVERY_S``):
counted against the cursor read from the database after the kill. Events another process
writes into the same database while the node runs are found by polling the table."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from center import CaseBroadcaster, CaseService, CaseStore, create_engine, migrate
from center.db import DeliveryCursorRow
from center.delivery.signing import new_secret
from citysense.broker import MosquittoBroker
from tests.center.factories import alert, open_acknowledged
from tests.center.webhook_receiver import WebhookReceiver
from tests.serve_process import api, metric, serve, serve_env, wait_for

pytestmark = pytest.mark.integration

BEFORE, DURING = 40, 10
"""Cases written before the node starts, and while it runs after the restart (3 events each:
opened, register, acknowledge)."""
SUBSCRIBER = "webhook:platform"
CURSOR_EVERY_S = 0.25
"""The cursor is written at most this often: at 20 ms an event, about a dozen events apart."""
KILL_AFTER = 60
"""Events delivered before the kill: a node that wrote its cursor only when idle sends them
all again and fails the bound below."""


async def write_cases(database_url: str, count: int, prefix: str) -> None:
    """Another process's writes: no broadcaster of the node's hears of them."""
    await migrate(database_url)
    engine = create_engine(database_url)
    try:
        service = CaseService(CaseStore(engine), CaseBroadcaster())
        now = datetime.now(UTC)  # live cases, acknowledged: no deadline runs
        for i in range(count):
            opened = alert(sensor_id=f"st-1.{prefix}{i}", started_at=now - timedelta(seconds=20))
            await open_acknowledged(service, opened, now)
    finally:
        await engine.dispose()


def test_kill_9_mid_delivery_resumes_from_the_persisted_cursor(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    secret = new_secret()
    webhooks = [{"name": "platform", "url": "", "secret": secret, "timeout_s": 2}]
    with WebhookReceiver(secret) as receiver:
        webhooks[0]["url"] = receiver.url
        receiver.delay_s = lambda _event_id: 0.02  # a receiver that takes its time
        receiver.start()
        env = serve_env(
            mosquitto,
            tmp_path,
            CITYSENSE_CENTER_WEBHOOKS=json.dumps(webhooks),
            CITYSENSE_CENTER_DELIVERY__POLL_S="0.2",
            CITYSENSE_CENTER_DELIVERY__BACKOFF_MAX_S="0.5",
            CITYSENSE_CENTER_DELIVERY__CURSOR_EVERY_S=str(CURSOR_EVERY_S),
            # named, as a container's node would be: the restart takes its lease back at once
            # by this name (by host name: tests/center/test_delivery_relay.py)
            CITYSENSE_CENTER_DELIVERY__NODE="kill-test-node",
        )
        database_url = env["CITYSENSE_CENTER_DATABASE_URL"]
        asyncio.run(write_cases(database_url, BEFORE, "before"))
        with serve(env) as node:
            wait_for(lambda: len(receiver.ids()) >= KILL_AFTER, 30, "delivery under way")
            node.send_signal(signal.SIGKILL)
            node.wait(timeout=10)
        at_kill = len(receiver.ids())
        assert at_kill < 3 * BEFORE, "killed after delivery had finished: nothing to resume"
        saved = asyncio.run(saved_cursor(database_url))

        with serve(env):
            asyncio.run(write_cases(database_url, DURING, "during"))
            total = 3 * (BEFORE + DURING)
            wait_for(lambda: set(receiver.ids()) >= set(range(1, total + 1)), 30, "all")
            wait_for(
                lambda: (
                    metric(env, "citysense_center_delivery_cursor", subscriber=SUBSCRIBER) == total
                ),
                10,
                "the cursor",
            )
            # the cursor is written before the loop says it is idle again: wait for both
            wait_for(
                lambda: api(env, "/api/v1/health")["delivery"][SUBSCRIBER]["state"] == "idle",
                10,
                "idle",
            )
            health = api(env, "/api/v1/health")["delivery"][SUBSCRIBER]
            assert (health["state"], health["cursor"], health["lag"]) == ("idle", total, 0)
            time.sleep(0.5)  # nothing more comes

    ids = receiver.ids()
    duplicates = receiver.duplicates()
    print(
        f"{len(ids)} deliveries of {total} events, {duplicates} duplicates, killed at {at_kill}, "
        f"cursor written at {saved}"
    )
    assert sorted(set(ids)) == list(range(1, total + 1))  # none lost
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(1, total + 1))  # in id order
    resumed = ids[at_kill:]
    assert resumed[0] == saved + 1  # from the cursor in the database
    sent_again = [i for i in ids[:at_kill] if i > saved]  # confirmed (or in flight), not written
    assert duplicates == len(sent_again)
    # written every 0.25 s while events flowed: ~12 events at 20 ms each, plus the one in
    # flight and room for a slow write; a cursor written only when idle sends 60 again
    assert saved > 0
    assert duplicates <= 30
    assert receiver.all_verified()


async def saved_cursor(database_url: str, subscriber: str = SUBSCRIBER) -> int:
    """The subscriber's cursor as committed in the database (a plain read: it waits for no
    writer, not even one frozen in the middle of its transaction)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                select(DeliveryCursorRow.last_event_id).where(
                    DeliveryCursorRow.subscriber == subscriber
                )
            )
        return int(found or 0)
    finally:
        await engine.dispose()
