"""The service and the live fan-out: stored cases reach subscribers, duplicates do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from center import (
    AlertRejectedError,
    CaseBroadcaster,
    CaseEvent,
    CaseService,
    CaseStats,
    CaseStore,
    create_engine,
)
from center.broadcast import Subscription
from rules.alerts import CaseTarget
from tests.center.factories import (
    DETECTED,
    T0,
    alert,
    case_event,
    cleared,
    sensor_info,
    transition,
)


async def _next(events: Subscription) -> CaseEvent:
    return await asyncio.wait_for(anext(events), timeout=2)


async def test_handle_alert_publishes_opened_registered_then_recovered(
    service: CaseService,
) -> None:
    opened = alert()
    async with service.broadcaster.subscribe() as events:
        await service.handle_alert(opened, sensor_info(), DETECTED)
        await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
        received = [await _next(events) for _ in range(3)]

    first, last = received[0], received[-1]
    assert (first.type, first.case.status, first.case.class_code) == ("opened", "open", "0103")
    assert [(e.type, e.case.step) for e in received] == [
        ("opened", "discover"),
        ("transition", "register"),
        ("recovered", "register"),
    ]
    assert (last.case.id, last.case.status, last.case.awaiting_verification) == (
        first.case.id,
        "cleared",
        True,
    )
    ids = [e.id for e in received]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert service.stats == CaseStats(opened=1, cleared=1)


async def test_duplicates_are_counted_not_published(service: CaseService) -> None:
    opened = alert()
    await service.handle_alert(opened, sensor_info(), DETECTED)
    async with service.broadcaster.subscribe() as events:
        await service.handle_alert(opened, sensor_info(), DETECTED)
        await service.handle_alert(
            cleared(alert(started_at=T0 - timedelta(hours=1))), None, DETECTED
        )
        assert events.pending == 0
    assert service.stats == CaseStats(opened=1, duplicates=1, unmatched_clears=1)
    assert (await service.store.list_cases())[1] == 1


async def test_rejected_alerts_are_counted(service: CaseService) -> None:
    with pytest.raises(AlertRejectedError):
        await service.handle_alert(alert(target=CaseTarget("event", "0999")), None, DETECTED)
    assert service.stats.rejected == 1


def _event(case_id: int) -> CaseEvent:
    return case_event(case_id)


async def test_every_subscriber_gets_every_event() -> None:
    broadcaster = CaseBroadcaster()
    async with broadcaster.subscribe() as one, broadcaster.subscribe() as two:
        assert broadcaster.subscriber_count == 2
        broadcaster.publish(_event(1))
        broadcaster.publish(_event(2))
        assert (one.pending, two.pending) == (2, 2)
        assert [(await _next(one)).case.id, (await _next(one)).case.id] == [1, 2]
        assert [(await _next(two)).case.id, (await _next(two)).case.id] == [1, 2]
    assert broadcaster.subscriber_count == 0


async def test_a_lagging_subscriber_is_disconnected_without_blocking() -> None:
    broadcaster = CaseBroadcaster(queue_size=3)
    async with broadcaster.subscribe() as slow, broadcaster.subscribe() as fast:
        for case_id in range(1, 5):
            broadcaster.publish(_event(case_id))  # never awaits, so it cannot block
            assert (await _next(fast)).case.id == case_id
        assert [event.case.id async for event in slow] == []
        assert (slow.lagged, fast.lagged) == (True, False)
        assert broadcaster.subscriber_count == 1
    assert broadcaster.lagging_disconnected == 1
    assert broadcaster.published == 4


async def test_close_ends_every_subscription() -> None:
    broadcaster = CaseBroadcaster()
    async with broadcaster.subscribe() as events:
        broadcaster.publish(_event(7))
        broadcaster.close()
        assert [event.case.id async for event in events] == [7]
    async with broadcaster.subscribe() as late:
        assert [event async for event in late] == []


async def test_members_and_flapping_are_published_as_updated_and_reopened(
    service: CaseService,
) -> None:
    opened = alert()
    async with service.broadcaster.subscribe() as events:
        await service.handle_alert(opened, sensor_info(), DETECTED)
        member = transition(opened, "member", timedelta(seconds=5), members=("a", "b"))
        await service.handle_alert(member, None, DETECTED)
        await service.handle_alert(cleared(opened), sensor_info(), DETECTED)
        flapping = transition(opened, "flapping", timedelta(minutes=6), flags=("flapping",))
        await service.handle_alert(flapping, sensor_info(), DETECTED)
        kinds = [(await _next(events)).type for _ in range(5)]
    assert kinds == ["opened", "transition", "updated", "recovered", "reopened"]
    assert service.stats == CaseStats(opened=1, cleared=1, members=1, reopened=1)


@pytest.fixture
async def other_node(database_url: str) -> AsyncIterator[CaseService]:
    """Another node on the same database: its own engine, store and broadcaster."""
    engine = create_engine(database_url)
    store = CaseStore(engine)
    try:
        yield CaseService(store, CaseBroadcaster())
    finally:
        store.close()
        await engine.dispose()


async def _open_on(node: CaseService, sensor_id: str) -> None:
    await node.handle_alert(alert(sensor_id=sensor_id), sensor_info(sensor_id=sensor_id), DETECTED)


async def test_events_another_process_writes_reach_this_nodes_live_stream_in_order(
    service: CaseService, other_node: CaseService
) -> None:
    """Another node on the same database writes cases: this node's subscribers get its events,
    from the log, in id order, none twice, both when this node follows the log and when one of
    its own writes comes after them."""
    assert await service.follow_once() == 0  # notes where the log ends
    async with service.broadcaster.subscribe() as events:
        await _open_on(other_node, "st-1.a")
        followed = await service.follow_once()
        assert followed >= 1
        await _open_on(other_node, "st-1.b")
        # this node's own write comes next: the other's events go out first
        await _open_on(service, "st-1.c")
        assert await service.follow_once() == 0  # nothing left, nothing twice
        every = [event.id for event in await service.store.events_after(0, 100)]
        received = [await _next(events) for _ in every]
        assert events.pending == 0
    assert [event.id for event in received] == every
    assert [event.case.sensor_id for event in received if event.type == "opened"] == [
        "st-1.a",
        "st-1.b",
        "st-1.c",
    ]


async def test_the_follower_publishes_another_process_events_within_its_period(
    service: CaseService, other_node: CaseService
) -> None:
    await service.follow_once()
    follower = asyncio.create_task(service.follow_log(0.05))
    try:
        async with service.broadcaster.subscribe() as events:
            await _open_on(other_node, "st-1.a")
            first = await _next(events)  # within the 2 s of _next: a period is 50 ms
        assert (first.type, first.case.sensor_id) == ("opened", "st-1.a")
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
