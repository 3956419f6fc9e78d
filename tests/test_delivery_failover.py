"""Two real nodes (``citysense serve``) on one PostgreSQL case store, configured with the same
webhook subscriber: one delivers, the other stands by (the delivery lease,
``center.delivery.relay``). The delivering node is killed (kill -9) mid-delivery: the other
takes over once the lease runs out, from the cursor in the database. Every event arrives, in id
order; only the event in flight at the kill arrives twice, and nothing arrives twice while both
run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from center.delivery.signing import new_secret
from citysense.broker import MosquittoBroker
from tests.center.conftest import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, _admin, _run_aside
from tests.center.webhook_receiver import WebhookReceiver
from tests.serve_process import api, metric, serve, serve_env, wait_for
from tests.test_delivery_kill import write_cases

pytestmark = pytest.mark.integration

BEFORE, DURING = 40, 10
"""Cases written before the nodes start, and after the kill (3 events each)."""
SUBSCRIBER = "webhook:platform"
LEASE_S = 2.0


@pytest.fixture
def shared_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for the two nodes."""
    admin = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    name = f"citysense_test_{secrets.token_hex(6)}"
    _run_aside(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        _run_aside(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _delivery(env: dict[str, str]) -> dict[str, object]:
    health: dict[str, object] = api(env, "/api/v1/health")["delivery"][SUBSCRIBER]
    return health


def test_the_standby_node_takes_over_delivery_when_the_delivering_one_is_killed(
    mosquitto: MosquittoBroker, tmp_path: Path, shared_database: str
) -> None:
    secret = new_secret()
    with WebhookReceiver(secret) as receiver, contextlib.ExitStack() as stack:
        webhooks = [{"name": "platform", "url": receiver.url, "secret": secret, "timeout_s": 2}]
        receiver.delay_s = lambda _event_id: 0.1  # slow enough that the kill is mid-delivery
        receiver.start()
        envs = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            envs.append(
                serve_env(
                    mosquitto,
                    tmp_path / name,
                    CITYSENSE_CENTER_DATABASE_URL=shared_database,
                    CITYSENSE_CENTER_WEBHOOKS=json.dumps(webhooks),
                    CITYSENSE_CENTER_DELIVERY__POLL_S="0.2",
                    CITYSENSE_CENTER_DELIVERY__BACKOFF_MAX_S="0.5",
                    CITYSENSE_CENTER_DELIVERY__LEASE_S=str(LEASE_S),
                )
            )
        env_a, env_b = envs
        asyncio.run(write_cases(shared_database, BEFORE, "before"))
        with serve(env_a) as node_a:
            wait_for(lambda: len(receiver.ids()) >= 10, 30, "node a delivering")
            stack.enter_context(serve(env_b))  # node a holds the lease: node b waits
            wait_for(lambda: _delivery(env_b)["state"] == "standby", 30, "node b standing by")
            holder = _delivery(env_a)["lease"]
            assert _delivery(env_b)["lease"] == holder
            assert metric(env_b, "citysense_center_delivery_standby", subscriber=SUBSCRIBER) == 1
            assert receiver.duplicates() == 0  # two nodes, one delivers
            node_a.send_signal(signal.SIGKILL)
            node_a.wait(timeout=10)
            killed_at = time.monotonic()
            at_kill = len(receiver.ids())
            assert at_kill < 3 * BEFORE, "killed after delivery had finished: nothing to take over"

            wait_for(lambda: len(receiver.ids()) > at_kill, 30, "node b takes over")
            took_over_s = time.monotonic() - killed_at
            asyncio.run(write_cases(shared_database, DURING, "during"))
            total = 3 * (BEFORE + DURING)
            wait_for(lambda: set(receiver.ids()) >= set(range(1, total + 1)), 30, "all")
            wait_for(lambda: _delivery(env_b)["state"] == "idle", 10, "idle")
            wait_for(lambda: _delivery(env_b)["cursor"] == total, 10, "the cursor")
            assert _delivery(env_b)["lease"] != holder
            assert metric(env_b, "citysense_center_delivery_standby", subscriber=SUBSCRIBER) == 0
            time.sleep(0.5)  # nothing more comes
            stack.close()

    ids = receiver.ids()
    duplicates = receiver.duplicates()
    print(
        f"{len(ids)} deliveries of {total} events, {duplicates} duplicates, killed at "
        f"{at_kill}, node b took over {took_over_s:.1f} s after the kill (lease {LEASE_S} s)"
    )
    assert sorted(set(ids)) == list(range(1, total + 1))  # none lost
    assert duplicates <= 1  # the event in flight at the kill, at most
    assert list(dict.fromkeys(ids)) == list(range(1, total + 1))  # in id order
    assert took_over_s < LEASE_S * 4 / 3 + 5  # the lease ran out, plus a try, plus slack
    assert receiver.all_verified()
