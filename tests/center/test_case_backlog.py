"""Cases found in a backlog (a station cut off, then catching up): marked, recorded, not
registered automatically; and the event log the stream resumes from."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from center import CaseStore, create_engine
from center.db import CaseEventRow
from tests.center.factories import T0, alert, cleared, sensor_info

OPENED = T0 + timedelta(seconds=10)  # the factories' alerts open 10 s after they start


async def _steps(store: CaseStore, case_id: int) -> list[str]:
    history = await store.history(case_id)
    assert history is not None
    return [entry.action for entry in history]


async def test_a_case_that_arrives_late_is_marked_and_not_registered(store: CaseStore) -> None:
    arrived = OPENED + timedelta(minutes=5, seconds=1)
    case = await store.record_alert(alert(), sensor_info(), arrived)
    assert case is not None
    assert (case.detected_late, case.ended_before_seen, case.step) == (True, False, "discover")
    assert (case.opened_at, case.detected_at) == (OPENED, arrived)
    assert await _steps(store, case.id) == ["discover"]
    history = await store.history(case.id)
    assert history is not None
    assert history[0].note.endswith("(detected late)")


async def test_one_within_the_threshold_is_live(store: CaseStore) -> None:
    case = await store.record_alert(alert(), sensor_info(), OPENED + timedelta(minutes=5))
    assert case is not None
    assert (case.detected_late, case.step) == (False, "register")


async def test_the_threshold_is_the_stores_setting(engine: AsyncEngine) -> None:
    strict = CaseStore(engine, late_after=timedelta(minutes=1))
    case = await strict.record_alert(alert(), sensor_info(), OPENED + timedelta(minutes=2))
    assert case is not None
    assert (case.detected_late, case.step) == (True, "discover")
    with pytest.raises(ValueError, match="positive"):
        CaseStore(engine, late_after=timedelta(0))


async def test_an_incident_over_before_the_center_saw_it_is_for_the_record(
    store: CaseStore,
) -> None:
    opened = alert()
    arrived = OPENED + timedelta(hours=2)  # the station's backlog after a 2-hour outage
    await store.record_alert(opened, sensor_info(), arrived)
    done = await store.record_alert(cleared(opened, timedelta(minutes=3)), None, arrived)
    assert done is not None
    assert (done.status, done.detected_late, done.ended_before_seen) == ("cleared", True, True)
    assert (done.step, done.awaiting_verification) == ("discover", True)  # nobody registered
    assert await _steps(store, done.id) == ["discover"]


async def test_a_live_incident_that_ends_later_did_not_end_before_seen(store: CaseStore) -> None:
    opened = alert()
    await store.record_alert(opened, sensor_info(), OPENED + timedelta(seconds=1))
    done = await store.record_alert(cleared(opened), None, OPENED + timedelta(minutes=5))
    assert done is not None
    assert (done.ended_before_seen, done.step, done.awaiting_verification) == (
        False,
        "register",
        True,
    )


async def test_every_change_writes_its_events_in_order(store: CaseStore) -> None:
    opened = alert()
    first = await store.apply_alert(opened, sensor_info(), OPENED)
    second = await store.apply_alert(cleared(opened), None, OPENED + timedelta(minutes=1))
    assert first is not None
    assert second is not None
    written = [*first.events, *second.events]
    assert [(e.type, e.case.step) for e in written] == [
        ("opened", "discover"),
        ("transition", "register"),
        ("recovered", "register"),
    ]
    assert await store.events_after(0) == written
    assert await store.events_after(written[0].id, limit=2) == written[1:3]
    assert await store.newest_event_id() == written[-1].id
    assert written[0].transition is not None
    assert written[0].transition.action == "discover"


async def test_duplicates_and_unmatched_alerts_write_no_event(store: CaseStore) -> None:
    opened = alert()
    assert await store.apply_alert(cleared(opened), None, OPENED) is None
    await store.apply_alert(opened, sensor_info(), OPENED)
    newest = await store.newest_event_id()
    assert await store.apply_alert(opened, sensor_info(), OPENED) is None
    assert await store.newest_event_id() == newest


async def test_event_ids_are_never_reused(store: CaseStore, engine: AsyncEngine) -> None:
    await store.record_alert(alert(), sensor_info(), OPENED)
    newest = await store.newest_event_id()
    async with engine.begin() as connection:  # what no code does: lose the newest event
        await connection.execute(delete(CaseEventRow).where(CaseEventRow.id == newest))
    later = alert(sensor_id="st-1.cover-02", started_at=T0 + timedelta(hours=1))
    change = await store.apply_alert(later, sensor_info("st-1.cover-02"), OPENED)
    assert change is not None
    assert change.events[0].id > newest


async def test_concurrent_writers_commit_events_in_id_order(database_url: str) -> None:
    """Writers on their own connections (no service lock between them) while a reader tails
    the log by id: the reader never passes an id that commits later, so it misses none."""
    engines = [create_engine(database_url) for _ in range(4)]
    stores = [CaseStore(engine) for engine in engines]
    done = asyncio.Event()

    async def writer(w: int) -> None:
        for n in range(15):
            sensor_id = f"st-{w}.cover-{n:02d}"
            opened = alert(station_id=f"st-{w}", sensor_id=sensor_id)
            await stores[w].record_alert(opened, None, OPENED)

    async def reader() -> list[int]:
        seen: list[int] = []
        while True:
            finished = done.is_set()
            batch = await stores[0].events_after(seen[-1] if seen else 0)
            seen.extend(event.id for event in batch)
            if finished and not batch:
                return seen
            await asyncio.sleep(0)

    try:
        tail = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(4)))
        done.set()
        seen = await tail
        every = [event.id for event in await stores[0].events_after(0, 10_000)]
    finally:
        for engine in engines:
            await engine.dispose()
    assert len(every) == 4 * 15 * 2  # opened, registered
    assert seen == every
