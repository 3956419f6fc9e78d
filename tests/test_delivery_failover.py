"""Two real nodes (``citysense serve``) on one PostgreSQL case store, configured with the same
webhook subscriber: one delivers, the other stands by (the delivery lease,
``center.delivery.relay``). The delivering node is killed (kill -9) mid-delivery: the other
takes over once the lease runs out, from the cursor in the database. Every event arrives, in id
order; what arrives twice is exactly what node a had sent after the cursor it last wrote (it
writes it every second: counted against the cursor read from the database at the kill), and
nothing arrives twice while both run. Node b's live stream carries the events another process
writes meanwhile (it follows the event log)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from center.delivery.signing import new_secret
from citysense.broker import MosquittoBroker
from tests.center.conftest import throwaway_database
from tests.center.webhook_receiver import WebhookReceiver
from tests.serve_process import api, auth_header, metric, serve, serve_env, wait_for
from tests.test_delivery_kill import saved_cursor, write_cases

pytestmark = pytest.mark.integration

BEFORE, DURING = 40, 10
"""Cases written before the nodes start, and after the kill (3 events each)."""
SUBSCRIBER = "webhook:platform"
LEASE_S = 3.0


@pytest.fixture
def shared_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for the two nodes."""
    with throwaway_database() as url:
        yield url.render_as_string(hide_password=False)


class StreamReader:
    """Reads a node's live stream (SSE) on a thread: the event ids, in the order they came."""

    def __init__(self, env: dict[str, str]) -> None:
        self.ids: list[int] = []
        self.started = threading.Event()
        url = f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}/api/v1/cases/stream"
        self._stream = httpx.stream("GET", url, headers=auth_header(env), timeout=None)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(httpx.HTTPError), self._stream as response:
            for line in response.iter_lines():
                self.started.set()
                if line.startswith("id: ") and line[4:].strip().isdigit():
                    self.ids.append(int(line[4:]))


def _delivery(env: dict[str, str]) -> dict[str, object]:
    health: dict[str, object] = api(env, "/api/v1/health")["delivery"][SUBSCRIBER]
    return health


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_the_standby_node_takes_over_delivery_when_the_delivering_one_is_lost(
    mosquitto: MosquittoBroker, tmp_path: Path, shared_database: str, how: str
) -> None:
    """``killed`` (kill -9): its process is gone, and node b, on the same host, takes its
    lease at once. ``frozen`` (SIGSTOP, as a node paused or cut off): its process still runs,
    so node b waits for the lease to run out; thawed (SIGCONT), node a finds its cursor moves
    refused and stands by."""
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
            if how == "killed":
                node_a.send_signal(signal.SIGKILL)
                node_a.wait(timeout=10)
            else:
                node_a.send_signal(signal.SIGSTOP)
            killed_at = time.monotonic()
            at_kill = len(receiver.ids())
            saved = asyncio.run(saved_cursor(shared_database))
            assert at_kill < 3 * BEFORE, "killed after delivery had finished: nothing to take over"

            wait_for(lambda: len(receiver.ids()) > at_kill, 30, "node b takes over")
            took_over_s = time.monotonic() - killed_at
            stream = StreamReader(env_b)  # starts after the newest event
            assert stream.started.wait(10)
            asyncio.run(write_cases(shared_database, DURING, "during"))
            total = 3 * (BEFORE + DURING)
            wait_for(lambda: set(receiver.ids()) >= set(range(1, total + 1)), 30, "all")
            wait_for(lambda: _delivery(env_b)["state"] == "idle", 10, "idle")
            wait_for(lambda: _delivery(env_b)["cursor"] == total, 10, "the cursor")
            assert _delivery(env_b)["lease"] != holder
            assert metric(env_b, "citysense_center_delivery_standby", subscriber=SUBSCRIBER) == 0
            time.sleep(0.5)  # nothing more comes
            during = list(range(3 * BEFORE + 1, total + 1))
            wait_for(lambda: stream.ids[1:] == during, 10, "node b's stream: the new events")
            if how == "frozen":
                node_a.send_signal(signal.SIGCONT)
                wait_for(lambda: _delivery(env_a)["state"] == "standby", 30, "node a stands by")
                assert _delivery(env_a)["lease"] == _delivery(env_b)["lease"]
                time.sleep(0.5)  # node a sends nothing more
            stack.close()

    ids = receiver.ids()
    duplicates = receiver.duplicates()
    print(
        f"{how}: {len(ids)} deliveries of {total} events, {duplicates} duplicates, lost after "
        f"{at_kill} (cursor {saved}), node b took over {took_over_s:.1f} s later "
        f"(lease {LEASE_S} s)"
    )
    assert sorted(set(ids)) == list(range(1, total + 1))  # none lost
    # again: what node a sent after its cursor (confirmed, or in flight at the kill); frozen,
    # node a may also finish the send it was in when thawed (then renews, is refused, stops)
    sent_again = len([i for i in ids[:at_kill] if i > saved])
    assert sent_again <= duplicates <= sent_again + (0 if how == "killed" else 1)
    assert ids[at_kill] == saved + 1  # node b starts from the cursor in the database
    assert duplicates <= 20  # a cursor written every second, at 100 ms an event (+ in flight)
    assert list(dict.fromkeys(ids)) == list(range(1, total + 1))  # in id order
    if how == "killed":
        assert took_over_s < LEASE_S  # at once: node a's process is gone
    else:
        assert LEASE_S / 3 < took_over_s < LEASE_S * 4 / 3 + 5  # once the lease ran out
    assert receiver.all_verified()


def test_a_node_that_stops_gives_its_leases_up(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """SIGTERM (systemd's stop): every subscriber's lease is released in the database, so
    another node takes over at once rather than after the lease (30 s) runs out."""
    secret = new_secret()
    with WebhookReceiver(secret) as receiver:
        webhooks = [{"name": "platform", "url": receiver.url, "secret": secret}]
        receiver.start()
        env = serve_env(mosquitto, tmp_path, CITYSENSE_CENTER_WEBHOOKS=json.dumps(webhooks))
        database = env["CITYSENSE_CENTER_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
        with serve(env) as node:
            wait_for(
                lambda: all("lease" in d for d in api(env, "/api/v1/health")["delivery"].values()),
                30,
                "the leases held",
            )
            assert _owners(database) != {None}
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=30) == 0  # a clean stop, not killed by the signal
    assert _owners(database) == {None}  # both subscribers': the webhook and the MQTT topic


def _owners(database: str) -> set[str | None]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return {owner for (owner,) in connection.execute("SELECT owner FROM delivery_cursors")}
