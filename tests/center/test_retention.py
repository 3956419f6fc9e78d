"""Retention with an injected clock (SQLite and PostgreSQL): closed cases whose sensor recovered
are deleted with their audit trail and events once unchanged for the set time; everything else
stays. Dead letters are pruned in the same pass."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from center import CaseBroadcaster, CaseService, CaseStore, CenterSettings, StoreError
from center.case_query import CaseFilter
from center.lifecycle import Action
from center.retention import Purged, Retention, RetentionPolicy
from citysense.node import node_retention
from ingest.dead_letters import JsonlDeadLetters
from ingest.fakes import MemoryDeadLetters
from ingest.settings import IngestSettings
from tests.center.factories import DETECTED, T0, alert, cleared, sensor_info

DAY = timedelta(days=1)
NOW = DETECTED + 100 * DAY
POLICY = RetentionPolicy(closed_cases=30 * DAY, dead_letters=7 * DAY)


class Clock:
    def __init__(self) -> None:
        self.now = DETECTED

    def __call__(self) -> datetime:
        return self.now


async def _case(service: CaseService, clock: Clock, name: str, *moves: Action) -> int:
    """An urgent case (registered by the system) moved by ``moves`` at ``clock.now``."""
    opened = alert(sensor_id=f"st-1.cover-{name}", started_at=clock.now - timedelta(seconds=30))
    await service.handle_alert(opened, sensor_info(opened.sensor_id), clock.now)
    (case,), _ = await service.store.list_cases(CaseFilter(sensor_id=opened.sensor_id))
    if name.startswith("recovered"):
        await service.handle_alert(cleared(opened), None, clock.now)
    note = "sensor faulty" if not name.startswith("recovered") else ""
    for action in moves:
        await service.transition(case.id, action=action, actor="王工", note=note)
    return case.id


CLOSING = (Action.DISPATCH, Action.HANDLE, Action.VERIFY, Action.CLOSE)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: CaseStore, clock: Clock) -> CaseService:
    return CaseService(store, CaseBroadcaster(), clock=clock)


async def test_closed_recovered_cases_unchanged_for_long_enough_go(
    service: CaseService, store: CaseStore, clock: Clock
) -> None:
    old = await _case(service, clock, "recovered-old", *CLOSING)
    evaluated = await _case(service, clock, "recovered-evaluated", *CLOSING, Action.EVALUATE)
    alarming = await _case(service, clock, "alarming", *CLOSING)  # closed, sensor still alarms
    working = await _case(service, clock, "recovered-working", Action.DISPATCH, Action.HANDLE)
    clock.now = NOW - 10 * DAY
    recent = await _case(service, clock, "recovered-recent", *CLOSING)
    clock.now = NOW
    newest_event = await store.newest_event_id()

    purged = await Retention(store, POLICY, clock=clock).run_once()

    assert purged == Purged(cases=2, dead_letters=0)
    for gone in (old, evaluated):
        assert await store.get_case(gone) is None
        assert await store.history(gone) is None
    kept, total = await store.list_cases()
    assert total == 3
    assert {case.id for case in kept} == {alarming, working, recent}
    events = await store.events_after(0, limit=1000)
    assert {event.case.id for event in events} == {alarming, working, recent}
    assert await store.newest_event_id() == newest_event  # the stream's ids go on from there
    assert [h.action for h in await store.history(recent) or []][-1] == "close"


async def test_a_case_stays_until_every_subscriber_has_its_events(
    service: CaseService, store: CaseStore, clock: Clock
) -> None:
    first = await _case(service, clock, "recovered-first", *CLOSING)
    through_first = await store.newest_event_id()
    second = await _case(service, clock, "recovered-second", *CLOSING)
    clock.now = NOW
    lagging = Retention(store, POLICY, clock=clock, delivered_through=lambda: through_first)
    assert await lagging.run_once() == Purged(cases=1)  # the second's events are not all out
    assert await store.get_case(first) is None
    assert await store.get_case(second) is not None
    behind = Retention(store, POLICY, clock=clock, delivered_through=lambda: 0)
    assert await behind.run_once() == Purged()  # a subscriber that has nothing yet
    caught_up = await store.newest_event_id()
    done = Retention(store, POLICY, clock=clock, delivered_through=lambda: caught_up)
    assert await done.run_once() == Purged(cases=1)


async def test_purge_runs_in_batches(service: CaseService, store: CaseStore, clock: Clock) -> None:
    for n in range(5):
        await _case(service, clock, f"recovered-{n}", *CLOSING)
    assert await store.purge_closed(NOW, batch=2) == 5
    assert (await store.list_cases())[1] == 0
    assert await store.purge_closed(NOW, batch=2) == 0


async def test_nothing_goes_without_a_retention(
    service: CaseService, store: CaseStore, clock: Clock, tmp_path: Path
) -> None:
    await _case(service, clock, "recovered-old", *CLOSING)
    letters = JsonlDeadLetters(tmp_path / "dead.jsonl")
    letters.write("citysense/v1/stations/st-1/telemetry", b"x", "not_json", "", T0)
    clock.now = NOW
    forever = RetentionPolicy.from_days(closed_cases=0, dead_letters=0)
    assert forever == RetentionPolicy(None, None)
    assert await Retention(store, forever, dead_letters=letters, clock=clock).run_once() == Purged()
    assert (await store.list_cases())[1] == 1
    assert len(letters.letters()) == 1


async def test_dead_letters_go_in_the_same_pass(
    store: CaseStore, clock: Clock, tmp_path: Path
) -> None:
    letters = JsonlDeadLetters(tmp_path / "dead.jsonl")
    for age in (30, 8, 6, 0):
        letters.write("citysense/v1/stations/st-1/telemetry", b"x", "not_json", "", NOW - age * DAY)
    clock.now = NOW
    purged = await Retention(store, POLICY, dead_letters=letters, clock=clock).run_once()
    assert purged == Purged(cases=0, dead_letters=2)
    assert [letter.received_at for letter in letters.letters()] == [NOW - 6 * DAY, NOW]


class FailingOnce:
    """A store whose first pass fails (the database is down), then deletes nothing."""

    def __init__(self) -> None:
        self.passes = 0
        self.third = asyncio.Event()

    async def purge_closed(self, before: datetime, delivered_through: int | None) -> int:
        self.passes += 1
        if self.passes == 3:
            self.third.set()
        if self.passes == 1:
            raise StoreError("case store: connection refused")
        return 0


async def test_the_periodic_task_survives_a_failed_pass(caplog: pytest.LogCaptureFixture) -> None:
    store = FailingOnce()
    retention = Retention(store, POLICY)  # type: ignore[arg-type]
    task = asyncio.create_task(retention.run(timedelta(milliseconds=1)))
    await asyncio.wait_for(store.third.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "retention pass failed" in caplog.text


def test_the_node_takes_its_retention_from_both_settings(tmp_path: Path) -> None:
    center = CenterSettings(closed_case_retention_days=90, retention_every_s=60)
    ingest = IngestSettings(dead_letter_retention_days=0)
    letters = JsonlDeadLetters(tmp_path / "dead.jsonl")
    node = SimpleNamespace(
        center=center,
        ingest=ingest,
        pipeline=SimpleNamespace(dead_letters=letters),
        service=SimpleNamespace(store="the store"),
        relays=[],
    )
    retention = node_retention(node)  # type: ignore[arg-type]
    assert retention.policy == RetentionPolicy(closed_cases=90 * DAY, dead_letters=None)
    assert (retention.store, retention.dead_letters) == ("the store", letters)
    assert retention.delivered_through() is None  # no subscriber: nothing to wait for
    node.relays = [SimpleNamespace(status=SimpleNamespace(cursor=c)) for c in (40, 12, 97)]
    assert retention.delivered_through() == 12  # the one furthest behind
    node.pipeline.dead_letters = MemoryDeadLetters()
    assert node_retention(node).dead_letters is None  # type: ignore[arg-type]
    defaults = node_retention(
        SimpleNamespace(  # type: ignore[arg-type]
            center=CenterSettings(),
            ingest=IngestSettings(),
            pipeline=SimpleNamespace(dead_letters=letters),
            service=SimpleNamespace(store=None),
            relays=[],
        )
    )
    assert defaults.policy == RetentionPolicy(closed_cases=730 * DAY, dead_letters=30 * DAY)
