"""Resuming the case stream (``center.stream``) over an in-memory event log: every event after
the client's last id, none twice, whichever way the log and the live broadcast overlap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from center import CaseBroadcaster, CaseEvent
from center.stream import events_after, start_position
from tests.center.factories import case_event


class FakeLog:
    """Committed events; ``reads`` counts the pages asked for."""

    def __init__(self, ids: Sequence[int] = ()) -> None:
        self.events = [case_event(i) for i in ids]
        self.reads = 0

    def commit(self, event_id: int) -> CaseEvent:
        event = case_event(event_id)
        self.events.append(event)
        return event

    async def events_after(self, after: int, limit: int = 500) -> list[CaseEvent]:
        self.reads += 1
        return [e for e in self.events if e.id > after][:limit]

    async def newest_event_id(self) -> int:
        return max((e.id for e in self.events), default=0)


async def _take(events: AsyncIterator[CaseEvent], count: int) -> list[int]:
    return [(await asyncio.wait_for(anext(events), 2)).id for _ in range(count)]


async def test_the_log_then_live_without_the_overlap_twice() -> None:
    log, broadcaster = FakeLog([1, 2, 3]), CaseBroadcaster()
    async with broadcaster.subscribe() as live:
        # 4 and 5 commit after the subscription and before the log is read: in both.
        for event_id in (4, 5):
            broadcaster.publish(log.commit(event_id))
        stream = events_after(log, live, 2, page=2)
        assert await _take(stream, 3) == [3, 4, 5]
        broadcaster.publish(log.commit(6))  # live only
        assert await _take(stream, 1) == [6]
    assert log.reads == 2  # pages of 2: [3, 4], [5]


async def test_a_new_client_starts_after_the_newest_event() -> None:
    log, broadcaster = FakeLog([1, 2, 3]), CaseBroadcaster()
    async with broadcaster.subscribe() as live:
        after = await start_position(log, None)
        assert after == 3
        broadcaster.publish(log.commit(4))
        assert await _take(events_after(log, live, after), 1) == [4]


async def test_an_unknown_id_is_taken_as_the_newest() -> None:
    log = FakeLog([1, 2])
    assert await start_position(log, 99) == 2
    assert await start_position(log, 1) == 1
    assert await start_position(FakeLog(), 5) == 0


async def test_a_late_live_event_already_replayed_is_skipped() -> None:
    log, broadcaster = FakeLog(), CaseBroadcaster()
    async with broadcaster.subscribe() as live:
        committed = [log.commit(i) for i in (1, 2, 3)]  # committed, published a bit later
        stream = events_after(log, live, 0)
        assert await _take(stream, 3) == [1, 2, 3]
        for event in committed:
            broadcaster.publish(event)
        broadcaster.publish(log.commit(4))
        assert await _take(stream, 1) == [4]


async def test_the_stream_ends_when_the_live_subscription_ends() -> None:
    log, broadcaster = FakeLog([1]), CaseBroadcaster()
    async with broadcaster.subscribe() as live:
        broadcaster.close()
        assert [event.id async for event in events_after(log, live, 0)] == [1]


async def test_a_quiet_subscription_ticks_and_loses_nothing_to_its_timeouts() -> None:
    """``ticking`` yields ``None`` for each quiet interval (the stream's keep-alive) and every
    event in order, whether it was queued before, between or during the waits."""
    log, broadcaster = FakeLog(), CaseBroadcaster()
    async with broadcaster.subscribe() as live:
        stream = events_after(log, live.ticking(0.05), 0)
        assert await asyncio.wait_for(anext(stream), 2) is None  # nothing for 50 ms
        assert await asyncio.wait_for(anext(stream), 2) is None
        broadcaster.publish(log.commit(1))
        broadcaster.publish(log.commit(2))
        seen = [await asyncio.wait_for(anext(stream), 2) for _ in range(2)]
        assert [event.id for event in seen if event is not None] == [1, 2]
        ids: list[int] = []
        ticks = 0

        async def read() -> None:
            nonlocal ticks
            while len(ids) < 37:
                event = await anext(stream)
                if event is None:
                    ticks += 1
                else:
                    ids.append(event.id)

        reader = asyncio.create_task(read())
        for event_id in range(3, 40):  # published while the reader waits, some as it times out
            await asyncio.sleep(0.045 + 0.001 * (event_id % 10))
            broadcaster.publish(log.commit(event_id))
        await asyncio.wait_for(reader, 2)
        assert ids == list(range(3, 40))
        assert ticks > 0
        broadcaster.close()
        assert [event async for event in stream] == []  # ends with the subscription
