"""Webhooks over real HTTP (httpx to an ``http.server`` receiver on a loopback port), on SQLite
and PostgreSQL: a receiver down for 60 s gets every event afterwards, in order, signed, none
lost; its 5xx/Retry-After and its refusals; a timeout's duplicate, recognised by its id.

"Down for 60 s" is 60 s of *simulated* time: the relay's sleeps are virtual (each retry delay
is recorded and advances a clock; the receiver starts listening once that clock passes 60 s),
so the test keeps the production backoff (1 s doubling up to 300 s) and runs in a second.
``tests/test_webhook_outage.py`` runs the 60 s outage in wall-clock time against a real node,
``tests/test_delivery_kill.py`` kills one mid-delivery.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from center import CaseService
from center.delivery import CursorStore, Relay, RetryPolicy, WebhookChannel, WebhookSubscriber
from center.delivery.signing import new_secret
from center.delivery.webhooks import retry_after_s
from tests.center.factories import DETECTED
from tests.center.test_delivery_relay import all_ids, open_cases, running, until
from tests.center.webhook_receiver import WebhookReceiver

PRODUCTION = RetryPolicy()  # 1 s doubling to 300 s, Retry-After up to an hour, polls every 5 s
SECRET = new_secret()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as receiver:
        yield receiver


class SimulatedTime:
    """The relay's sleep: no real waiting; the clock advances by what it would have slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def webhook_relay(
    receiver: WebhookReceiver,
    service: CaseService,
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    sleep: Callable[[float], Awaitable[None]],
    *,
    timeout_s: float = 10.0,
) -> Relay:
    subscriber = WebhookSubscriber.model_validate(
        {"name": "platform", "url": receiver.url, "secret": SECRET, "timeout_s": timeout_s}
    )
    return Relay(
        WebhookChannel(subscriber, http),
        service.store,
        CursorStore(engine),
        service.broadcaster.wakeup(),
        policy=PRODUCTION,
        sleep=sleep,
        rng=random.Random(3),
    )


async def test_a_receiver_down_for_60_s_gets_every_event_in_order_afterwards(
    service: CaseService, engine: AsyncEngine, http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await open_cases(service, 2)  # 6 events before; the receiver is down (nothing listens)
    outage = SimulatedTime()
    written_at: list[float] = []

    async def sleep_through_the_outage(seconds: float) -> None:
        await outage(seconds)
        while len(written_at) < 5 and outage.now >= 10 * (len(written_at) + 1):
            written_at.append(outage.now)  # cases keep opening during the outage
            await open_cases(service, 1, f"during{len(written_at)}")
        if outage.now >= 60 and not receiver.running:
            receiver.start()

    relay = webhook_relay(receiver, service, engine, http, sleep_through_the_outage)
    async with running(relay):
        await until(lambda: relay.status.cursor == 21, "every event delivered", within=15)
        await open_cases(service, 1, "after")  # and live ones keep flowing
        await until(lambda: relay.status.cursor == 24, "the live ones", within=15)

    assert receiver.ids() == await all_ids(service.store) == list(range(1, 25))
    assert receiver.duplicates() == 0
    assert receiver.all_verified()
    assert len(written_at) == 5
    assert outage.now >= 60
    assert sum(outage.delays[:-1]) < 60 <= sum(outage.delays)  # retried until it was back
    assert max(outage.delays) <= PRODUCTION.max_s
    assert relay.status.failed["unreachable"] == len(outage.delays)
    first = receiver.deliveries[0].event
    assert (first["type"], first["id"]) == ("opened", 1)
    assert receiver.deliveries[2].event["transition"] is not None  # the operator's acknowledge


async def test_5xx_and_429_are_retried_after_the_receivers_retry_after(
    service: CaseService, engine: AsyncEngine, http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    await open_cases(service, 1)
    answers = iter([(503, {"retry-after": "7"}), (429, {"retry-after": "2"}), (500, {})])

    def busy_at_first(event_id: int) -> tuple[int, dict[str, str]]:
        return next(answers, (200, {})) if event_id == 2 else (200, {})

    receiver.answer = busy_at_first
    receiver.start()
    time = SimulatedTime()
    relay = webhook_relay(receiver, service, engine, http, time)
    async with running(relay):
        await until(lambda: relay.status.cursor == 3, "delivered")
    assert time.delays[:2] == [7.0, 2.0]
    assert 0.5 <= time.delays[2] <= 1.0  # no Retry-After: the backoff
    assert receiver.ids() == [1, 2, 2, 2, 2, 3]  # the same event until it was taken
    assert dict(relay.status.failed) == {"http_503": 1, "http_429": 1, "http_500": 1}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
async def test_a_4xx_is_a_refusal_and_stops_the_subscriber(
    service: CaseService,
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    receiver: WebhookReceiver,
    status: int,
) -> None:
    await open_cases(service, 1)
    receiver.answer = lambda event_id: (status, {}) if event_id == 2 else (200, {})
    receiver.start()
    relay = webhook_relay(receiver, service, engine, http, SimulatedTime())
    await asyncio.wait_for(relay.run(), 10)
    assert relay.status.state == "stopped"
    assert relay.status.refusal is not None
    assert relay.status.refusal.reason.startswith(f"HTTP {status}")
    assert receiver.ids() == [1, 2]  # event 3 waits behind the refused one
    assert relay.status.cursor == 1


async def test_a_receiver_too_slow_to_answer_gets_the_event_again(
    service: CaseService, engine: AsyncEngine, http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    """At least once: the receiver took event 2 but answered after the timeout; the retry is
    a duplicate with the same webhook-id, which the receiver recognises."""
    await open_cases(service, 1)
    slow = {2: 1.0}
    receiver.delay_s = lambda event_id: slow.pop(event_id, 0.0)
    receiver.start()
    relay = webhook_relay(receiver, service, engine, http, SimulatedTime(), timeout_s=0.3)
    async with running(relay):
        await until(lambda: relay.status.cursor == 3, "delivered")
    assert receiver.ids() == [1, 2, 2, 3]
    assert receiver.duplicates() == 1
    assert relay.status.failed == {"timeout": 1}


def test_retry_after_as_seconds_or_a_date() -> None:
    assert retry_after_s("120", DETECTED) == 120.0
    assert retry_after_s("Wed, 01 Jul 2026 08:03:00 GMT", DETECTED) == 120.0
    assert retry_after_s("Wed, 01 Jul 2026 07:00:00 GMT", DETECTED) == 0.0
    assert retry_after_s("tomorrow", DETECTED) is None
    assert retry_after_s(None, DETECTED) is None
