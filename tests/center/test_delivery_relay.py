"""The outbox relay on a real case store (SQLite and PostgreSQL) with a fake channel: every event
in id order from a persisted cursor, retried with growing jittered delays or the receiver's
Retry-After, a permanent refusal stops the subscriber (recorded) until the next start, and the
table is polled for events another process wrote."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from center import CaseBroadcaster, CaseEvent, CaseService, CaseStore
from center.delivery import (
    CursorStore,
    RefusedDeliveryError,
    Relay,
    RetryPolicy,
    TransientDeliveryError,
)
from center.delivery.cursors import utc_now
from center.delivery.relay import default_owner, gone
from center.delivery.settings import StartAt
from center.metrics import DeliveryCollector
from tests.center.factories import DETECTED, alert, open_acknowledged

FAST = RetryPolicy(initial_s=1.0, max_s=60.0, retry_after_max_s=120.0, poll_s=0.05)


class FakeChannel:
    def __init__(self, start: StartAt = "beginning") -> None:
        self.name = "fake:receiver"
        self.start: StartAt = start
        self.sent: list[int] = []
        self.failures: dict[int, list[Exception]] = {}

    async def send(self, event: CaseEvent) -> None:
        waiting = self.failures.get(event.id)
        if waiting:
            raise waiting.pop(0)
        self.sent.append(event.id)


class VirtualSleep:
    """Sleeps no real time; records what the relay would have waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


async def open_cases(service: CaseService, count: int, prefix: str = "c") -> None:
    """``count`` urgent cases, three events each (opened, register, acknowledge)."""
    for i in range(count):
        await open_acknowledged(service, alert(sensor_id=f"st-1.{prefix}{i}"), DETECTED)


async def all_ids(store: CaseStore) -> list[int]:
    return [event.id for event in await store.events_after(0, 10_000)]


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(what)


@asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def relay_for(
    channel: FakeChannel,
    service: CaseService,
    engine: AsyncEngine,
    sleep: VirtualSleep,
    **options: Any,
) -> Relay:
    """A relay on the test's store; ``options`` (the policy, the owner...) over the defaults."""
    return Relay(
        channel,
        service.store,
        CursorStore(engine),
        service.broadcaster.wakeup(),
        **{"policy": FAST, "sleep": sleep, "rng": random.Random(7), **options},
    )


async def test_every_event_in_order_and_the_cursor_survives(
    service: CaseService, engine: AsyncEngine
) -> None:
    await open_cases(service, 3)
    channel, sleep = FakeChannel(), VirtualSleep()
    relay = relay_for(channel, service, engine, sleep)
    async with running(relay):
        await until(lambda: relay.status.cursor == 9, "the first nine")
        await open_cases(service, 2, "d")  # woken by the broadcaster
        await until(lambda: relay.status.cursor == 15, "six more")
    assert channel.sent == await all_ids(service.store)
    assert (relay.status.cursor, relay.status.delivered, relay.status.lag) == (15, 15, 0)
    await open_cases(service, 1, "e")  # while no relay runs
    again = FakeChannel()
    restarted = relay_for(again, service, engine, sleep)
    async with running(restarted):
        await until(lambda: restarted.status.cursor == 18, "the next start")
    assert again.sent == [16, 17, 18]  # from the persisted cursor: none again, none skipped


class CountingCursors(CursorStore):
    """The cursor store, counting the cursor's writes."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.writes: list[int] = []

    async def advance(self, subscriber: str, event_id: int, *args: Any, **kwargs: Any) -> None:
        self.writes.append(event_id)
        await super().advance(subscriber, event_id, *args, **kwargs)


async def test_the_cursor_is_written_once_a_second_not_after_every_event(
    service: CaseService, engine: AsyncEngine
) -> None:
    """Thirty events confirmed in a burst take one or two cursor writes, not thirty (each takes
    the case store's write turn); the write that is due comes within the interval (1 s) once
    the relay is idle, and a graceful stop writes what is left."""
    await open_cases(service, 10)
    cursors = CountingCursors(engine)
    wakeup = service.broadcaster.wakeup()
    relay = Relay(FakeChannel(), service.store, cursors, wakeup, policy=FAST, sleep=VirtualSleep())
    assert FAST.cursor_every_s == 1.0
    async with running(relay):
        await until(lambda: relay.status.cursor == 30, "delivered")
        await until(lambda: relay.status.saved == 30, "written", within=FAST.cursor_every_s + 2)
        assert relay.status.health()["saved"] == 30
        assert cursors.writes[-1] == 30
        assert len(cursors.writes) <= 3, cursors.writes
        await open_cases(service, 1, "d")
        await until(lambda: relay.status.cursor == 33, "three more")
    assert cursors.writes[-1] == 33  # the stop wrote it, if the interval had not passed
    stored = await CursorStore(engine).open("fake:receiver", "beginning", DETECTED)
    assert stored.last_event_id == 33


async def test_outages_are_retried_with_growing_jittered_delays(
    service: CaseService, engine: AsyncEngine
) -> None:
    await open_cases(service, 1)
    channel, sleep = FakeChannel(), VirtualSleep()
    channel.failures[2] = [TransientDeliveryError("unreachable", "refused") for _ in range(9)]
    relay = relay_for(channel, service, engine, sleep)
    async with running(relay):
        await until(lambda: channel.sent == [1, 2, 3], "through the outage")
    # 1, 2, 4 ... doubling up to the 60 s cap, each drawn from the upper half of its ceiling
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert len(sleep.delays) == len(ceilings)
    for delay, ceiling in zip(sleep.delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert relay.status.failed == {"unreachable": 9}


async def test_retry_after_is_honoured_up_to_its_cap(
    service: CaseService, engine: AsyncEngine
) -> None:
    await open_cases(service, 1)
    channel, sleep = FakeChannel(), VirtualSleep()
    channel.failures[1] = [
        TransientDeliveryError("http_503", "busy", retry_after=7.0),
        TransientDeliveryError("http_429", "slow down", retry_after=86_400.0),
        TransientDeliveryError("http_503", "busy", retry_after=0.0),
    ]
    relay = relay_for(channel, service, engine, sleep)
    async with running(relay):
        await until(lambda: len(channel.sent) == 3, "delivered")
    assert sleep.delays == [7.0, 120.0, 0.0]
    assert relay.status.failed == {"http_503": 2, "http_429": 1}


async def test_a_refusal_stops_the_subscriber_until_the_next_start(
    service: CaseService, engine: AsyncEngine
) -> None:
    await open_cases(service, 2)
    channel, sleep = FakeChannel(), VirtualSleep()
    channel.failures[4] = [RefusedDeliveryError("http_400", "HTTP 400: unknown field")]
    relay = relay_for(channel, service, engine, sleep)
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(task, 10)  # it stops by itself
    assert channel.sent == [1, 2, 3]  # nothing after the refused event: no skipping
    assert relay.status.state == "stopped"
    assert relay.status.cursor == 3
    assert relay.status.refusal is not None
    assert relay.status.refusal.event_id == 4
    health = relay.status.health()
    assert health["refused"] == {
        "event_id": 4,
        "reason": "HTTP 400: unknown field",
        "at": relay.status.refusal.at.isoformat(),
    }
    registry = CollectorRegistry()
    registry.register(DeliveryCollector([relay]))
    text = generate_latest(registry).decode()
    assert 'citysense_center_delivery_stopped{subscriber="fake:receiver"} 1.0' in text
    assert 'citysense_center_delivery_lag_events{subscriber="fake:receiver"} 3.0' in text
    assert (
        'citysense_center_delivery_failed_attempts_total{cause="http_400",'
        'subscriber="fake:receiver"} 1.0' in text
    )
    cursor = await CursorStore(engine).open("fake:receiver", "beginning", DETECTED)
    assert cursor.last_event_id == 3
    assert cursor.refusal is not None
    assert cursor.refusal.event_id == 4  # kept in the database, for the record

    fixed = FakeChannel()  # the receiver was fixed; the node restarts
    again = relay_for(fixed, service, engine, sleep)
    async with running(again):
        await until(lambda: again.status.cursor == 6, "the refused event and the rest")
    assert fixed.sent == [4, 5, 6]
    cursor = await CursorStore(engine).open("fake:receiver", "beginning", DETECTED)
    assert (cursor.last_event_id, cursor.refusal) == (6, None)


@pytest.mark.parametrize(("start", "first"), [("beginning", 1), ("now", 4)])
async def test_where_a_new_subscriber_starts(
    service: CaseService, engine: AsyncEngine, start: StartAt, first: int
) -> None:
    await open_cases(service, 1)
    channel = FakeChannel(start)
    relay = relay_for(channel, service, engine, VirtualSleep())
    async with running(relay):
        await until(lambda: relay.status.state == "idle", "caught up")
        await open_cases(service, 1, "n")
        await until(lambda: relay.status.cursor == 6, "the new case")
    assert channel.sent == list(range(first, 7))


async def test_events_another_process_wrote_are_polled(
    service: CaseService, engine: AsyncEngine
) -> None:
    """Another writer (another node, a script) on the same database publishes to no broadcaster
    of ours: the relay finds its events by reading the table every ``poll_s``."""
    channel = FakeChannel()
    relay = relay_for(channel, service, engine, VirtualSleep())
    elsewhere = CaseService(CaseStore(engine), CaseBroadcaster())
    async with running(relay):
        await until(lambda: relay.status.state == "idle", "idle")
        await open_cases(elsewhere, 2)
        await until(lambda: relay.status.cursor == 6, "polled")
    assert channel.sent == await all_ids(service.store)


SHORT_LEASE = RetryPolicy(initial_s=1.0, max_s=60.0, poll_s=0.05, lease_s=1.0, cursor_every_s=0)
"""A lease of 1 s: a standby node tries to take it every third of a second; the cursor written
after every event."""


class HeldChannel(FakeChannel):
    """Holds event ``held`` in ``send`` until ``release`` is set (a node stuck mid-delivery)."""

    def __init__(self, held: int) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def send(self, event: CaseEvent) -> None:
        if event.id == self.held:
            self.holding.set()
            await self.release.wait()
        await super().send(event)


async def never(_seconds: float) -> None:
    """A node that no longer renews its lease: its renewal sleeps for ever."""
    await asyncio.Event().wait()


def node_relay(
    channel: FakeChannel,
    service: CaseService,
    engine: AsyncEngine,
    owner: str,
    lease_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    cursor_every_s: float = SHORT_LEASE.cursor_every_s,
) -> Relay:
    return relay_for(
        channel,
        service,
        engine,
        VirtualSleep(),
        policy=replace(SHORT_LEASE, cursor_every_s=cursor_every_s),
        owner=owner,
        lease_sleep=lease_sleep,
    )


async def test_one_node_delivers_to_a_subscriber_and_another_takes_over_when_it_stops(
    service: CaseService, engine: AsyncEngine
) -> None:
    await open_cases(service, 3)
    a, b = FakeChannel(), FakeChannel()  # the same subscriber configured on two nodes
    node_a = node_relay(a, service, engine, "node-a")
    node_b = node_relay(b, service, engine, "node-b")
    async with running(node_a) as running_a, running(node_b):
        await until(lambda: node_a.status.cursor == 9, "node a delivers")
        await until(lambda: node_b.status.state == "standby", "node b stands by")
        assert node_b.status.health()["lease"] == "node-a"
        await open_cases(service, 2, "d")
        await until(lambda: node_a.status.cursor == 15, "node a delivers the new ones")
        await asyncio.sleep(1.5)  # longer than the lease: node a keeps renewing it
        assert node_b.status.state == "standby"
        running_a.cancel()  # node a stops: it gives the lease up
        await asyncio.gather(running_a, return_exceptions=True)
        await open_cases(service, 1, "e")
        await until(lambda: node_b.status.cursor == 18, "node b takes over from the cursor")
        assert node_b.status.health()["lease"] == "node-b"
    assert a.sent == list(range(1, 16))
    assert b.sent == [16, 17, 18]  # none twice, none skipped
    registry = CollectorRegistry()
    registry.register(DeliveryCollector([node_a, node_b]))
    assert 'citysense_center_delivery_standby{subscriber="fake:receiver"} 0.0' in (
        generate_latest(registry).decode()
    )


@pytest.mark.parametrize(("cursor_every_s", "saved_by_a"), [(0.0, 4), (60.0, 0)])
async def test_a_node_that_stops_renewing_loses_the_lease_and_cannot_move_the_cursor(
    service: CaseService, engine: AsyncEngine, cursor_every_s: float, saved_by_a: int
) -> None:
    """Node a is stuck sending event 5 and renews nothing (killed, paused, cut off): node b
    takes over once the lease ran out and sends from the cursor, event 5 included; when node
    a comes back it renews its stale lease before sending anything more, is refused and
    stands by. What arrives twice is what node a confirmed after the cursor it wrote: event 5
    with a cursor written after every event; events 1-5 with one written every 60 s (node a
    wrote none: without the renewal before sending, it would also send 6-9 beside node b)."""
    await open_cases(service, 3)
    a, b = HeldChannel(held=5), FakeChannel()
    node_a = node_relay(
        a, service, engine, "node-a", lease_sleep=never, cursor_every_s=cursor_every_s
    )
    node_b = node_relay(b, service, engine, "node-b")
    async with running(node_a):
        await asyncio.wait_for(a.holding.wait(), 10)
        async with running(node_b):
            await until(lambda: node_b.status.cursor == 9, "node b takes over", within=15)
            await until(lambda: node_b.status.state == "idle", "node b done")
            a.release.set()  # node a comes back: its move past event 5 is refused
            await until(lambda: node_a.status.state == "standby", "node a stands by")
            assert node_a.status.health()["lease"] == "node-b"
            await open_cases(service, 1, "d")
            await until(lambda: node_b.status.cursor == 12, "node b goes on")
    assert a.sent == [1, 2, 3, 4, 5]
    assert b.sent == list(range(saved_by_a + 1, 13))
    cursor = await CursorStore(engine).open("fake:receiver", "beginning", DETECTED)
    assert cursor.last_event_id == 12


def _ended_process() -> int:
    """The process id of a process of this host that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_which_lease_holders_are_known_to_be_gone() -> None:
    host = socket.gethostname()[:40]
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as running_now:
        try:
            assert not gone(f"{host}:{running_now.pid}:abcd")  # it runs: its lease must end
        finally:
            running_now.kill()
    assert gone(f"{host}:{_ended_process()}:abcd")
    assert not gone(f"other-host:{_ended_process()}:abcd")  # nothing known of other hosts
    # this process's id (a container's process 1 at every start): gone unless a relay of this
    # process runs under that name
    assert gone(f"{host}:{os.getpid()}:abcd")
    assert not gone("not a name of ours")


def test_a_named_node_knows_its_own_dead_processes_whatever_its_host_name() -> None:
    """CITYSENSE_CENTER_DELIVERY__NODE: a container gets a new host name at each start."""
    ended = _ended_process()
    assert gone(f"node-a:{ended}:abcd", "node-a")
    assert not gone(f"node-b:{ended}:abcd", "node-a")  # another node's: its lease must end
    assert not gone(f"node-a:{ended}:abcd")  # by host name, node-a is another node
    assert default_owner("node-a").startswith(f"node-a:{os.getpid()}:")
    assert default_owner().startswith(f"{socket.gethostname()[:40]}:{os.getpid()}:")


async def test_a_node_restarted_on_the_same_host_takes_its_old_lease_at_once(
    service: CaseService, engine: AsyncEngine
) -> None:
    """The lease of a node that was killed (its process gone) is taken at once by the next
    node of the same host, not after the lease runs out (30 s by default)."""
    await open_cases(service, 1)
    cursors = CursorStore(engine)
    await cursors.open("fake:receiver", "beginning", DETECTED)
    killed = f"{socket.gethostname()[:40]}:{_ended_process()}:0000"
    assert await cursors.claim("fake:receiver", killed, utc_now(), timedelta(hours=1)) is None
    channel = FakeChannel()
    relay = relay_for(channel, service, engine, VirtualSleep())  # a lease of 30 s
    async with running(relay):
        await until(lambda: relay.status.cursor == 3, "delivered at once", within=5)
    assert channel.sent == [1, 2, 3]


async def test_a_relay_running_here_is_not_taken_for_a_previous_life_of_this_process(
    service: CaseService, engine: AsyncEngine
) -> None:
    """Two relays of one process on one subscriber (two nodes in one test process): the second
    stands by; it does not take the first's lease for a dead predecessor's."""
    await open_cases(service, 1)
    host_pid = f"{socket.gethostname()[:40]}:{os.getpid()}"
    first, second = FakeChannel(), FakeChannel()
    node_a = node_relay(first, service, engine, f"{host_pid}:aaaa")
    node_b = node_relay(second, service, engine, f"{host_pid}:bbbb")
    async with running(node_a):
        await until(lambda: node_a.status.cursor == 3, "node a delivers")
        assert not gone(node_a.owner)
        async with running(node_b):
            await until(lambda: node_b.status.state == "standby", "node b stands by")
            await asyncio.sleep(0.5)
            assert node_b.status.state == "standby"
    assert gone(node_a.owner)  # no longer running here
    assert (first.sent, second.sent) == ([1, 2, 3], [])
