"""The outbox relay on a real case store (SQLite and PostgreSQL) with a fake channel: every event
in id order from a persisted cursor, retried with growing jittered delays or the receiver's
Retry-After, a permanent refusal stops the subscriber (recorded) until the next start, and the
table is polled for events another process wrote."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

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
    channel: FakeChannel, service: CaseService, engine: AsyncEngine, sleep: VirtualSleep
) -> Relay:
    return Relay(
        channel,
        service.store,
        CursorStore(engine),
        service.broadcaster.wakeup(),
        policy=FAST,
        sleep=sleep,
        rng=random.Random(7),
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
