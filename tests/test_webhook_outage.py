"""A real node (``citysense serve``) whose webhook receiver is down for 60 s of wall-clock time
while cases keep being written: once the receiver is back, it gets every event, in id order,
signed, none twice. ``tests/center/test_webhooks_http.py`` runs the same outage in simulated
time with the production backoff; here the waits are real (backoff capped at 5 s, so delivery
resumes within seconds of the receiver's return), which makes this test a minute long."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from center.delivery.signing import new_secret
from citysense.broker import MosquittoBroker
from tests.center.webhook_receiver import WebhookReceiver
from tests.serve_process import api, metric, serve, serve_env, wait_for
from tests.test_delivery_kill import write_cases

pytestmark = pytest.mark.integration

OUTAGE_S = 60.0
BEFORE, EVERY_S = 5, 10.0
"""Cases written before the node starts (3 events each), then one every 10 s of the outage."""
SUBSCRIBER = "webhook:platform"


def test_a_receiver_down_for_60_s_gets_every_event_after_it_returns(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    secret = new_secret()
    with WebhookReceiver(secret) as receiver:  # not started: connection refused on its port
        webhooks = [{"name": "platform", "url": receiver.url, "secret": secret, "timeout_s": 2}]
        env = serve_env(
            mosquitto,
            tmp_path,
            CITYSENSE_CENTER_WEBHOOKS=json.dumps(webhooks),
            CITYSENSE_CENTER_DELIVERY__POLL_S="0.2",
            CITYSENSE_CENTER_DELIVERY__BACKOFF_MAX_S="5",
        )
        database_url = env["CITYSENSE_CENTER_DATABASE_URL"]
        asyncio.run(write_cases(database_url, BEFORE, "before"))
        with serve(env):
            down_since = time.monotonic()
            wait_for(
                lambda: metric(
                    env,
                    "citysense_center_delivery_failed_attempts_total",
                    subscriber=SUBSCRIBER,
                    cause="unreachable",
                ),
                30,
                "the node tried the receiver",
            )
            written = BEFORE
            while (elapsed := time.monotonic() - down_since) < OUTAGE_S:
                if elapsed >= EVERY_S * (written - BEFORE + 1):  # cases keep coming meanwhile
                    asyncio.run(write_cases(database_url, 1, f"during{written}"))
                    written += 1
                time.sleep(0.2)
            assert receiver.ids() == []
            failed = metric(
                env,
                "citysense_center_delivery_failed_attempts_total",
                subscriber=SUBSCRIBER,
                cause="unreachable",
            )
            receiver.start()
            back_at = time.monotonic()
            total = 3 * written
            wait_for(lambda: set(receiver.ids()) >= set(range(1, total + 1)), 30, "all")
            caught_up_s = time.monotonic() - back_at
            health = api(env, "/api/v1/health")["delivery"][SUBSCRIBER]
            time.sleep(0.5)  # nothing more comes

    ids = receiver.ids()
    print(
        f"{written} cases ({total} events), {failed:.0f} failed attempts during the outage, "
        f"all delivered {caught_up_s:.1f} s after the receiver returned"
    )
    assert written == BEFORE + int(OUTAGE_S // EVERY_S) - 1  # every 10 s, the last at 50 s
    assert ids == list(range(1, total + 1))  # every one, in id order, none twice
    assert receiver.duplicates() == 0
    assert receiver.all_verified()
    assert failed >= 5  # it kept trying through the outage (backoff up to 5 s)
    assert health["cursor"] == total
