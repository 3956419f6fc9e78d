"""The case store on SQLite and PostgreSQL: alerts become cases exactly once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from center import AlertRejectedError, CaseStore, StoreError, create_engine, db, migrate
from center.case_query import CaseFilter
from center.delivery.cursors import CursorStore
from protocol import SensorKind
from rules.alerts import CaseTarget
from tests.center.factories import DETECTED, T0, alert, cleared, sensor_info, transition

BEIJING = timezone(timedelta(hours=8))


async def test_open_alert_becomes_a_case(store: CaseStore) -> None:
    case = await store.record_alert(alert(), sensor_info(), DETECTED)

    assert case is not None
    assert (case.class_code, case.class_name, case.major_name) == ("0103", "雨水井盖", "公用设施")
    assert case.category == "component"
    assert (case.component_id, case.district_code) == ("4101050103000123", "410105")
    assert case.grid_code == "41010500100201"
    assert (case.lon, case.lat, case.address) == (113.68, 34.78, "金水路 1 号")
    assert (case.status, case.cleared_at, case.unregistered) == ("open", None, False)
    assert (case.started_at, case.opened_at) == (T0, T0 + timedelta(seconds=10))
    assert (case.detected_at, case.updated_at) == (DETECTED, DETECTED)
    assert (case.trigger_value, case.threshold, case.field) == (35.0, 15.0, "tilt_deg")
    assert [(p.ts, p.value) for p in case.evidence] == [
        (T0, 35.0),
        (T0 + timedelta(seconds=10), 36.0),
    ]
    assert await store.get_case(case.id) == case


async def test_a_case_names_the_rule_set_version_that_opened_it(store: CaseStore) -> None:
    from dataclasses import replace

    case = await store.record_alert(replace(alert(), rules_version=3), sensor_info(), DETECTED)
    assert case is not None
    assert case.rules_version == 3
    backtest = await store.record_alert(alert(sensor_id="st-1.cover-02"), None, DETECTED)
    assert backtest is not None
    assert backtest.rules_version is None


async def test_the_same_alert_twice_is_one_case(store: CaseStore) -> None:
    first = await store.record_alert(alert(), sensor_info(), DETECTED)
    again = await store.record_alert(alert(), sensor_info(), DETECTED + timedelta(minutes=3))

    assert first is not None
    assert again is None
    items, total = await store.list_cases()
    assert (total, [case.id for case in items]) == (1, [first.id])


async def test_same_instant_in_another_offset_is_the_same_alert(store: CaseStore) -> None:
    await store.record_alert(alert(), sensor_info(), DETECTED)
    in_beijing = alert(started_at=T0.astimezone(BEIJING))
    assert await store.record_alert(in_beijing, sensor_info(), DETECTED) is None


async def test_times_come_back_in_utc(store: CaseStore) -> None:
    started = datetime(2026, 7, 1, 16, 0, tzinfo=BEIJING)
    case = await store.record_alert(alert(started_at=started), sensor_info(), DETECTED)

    assert case is not None
    assert case.started_at == started
    assert case.started_at.utcoffset() == timedelta(0)
    fetched = await store.get_case(case.id)
    assert fetched is not None
    assert fetched.started_at.tzinfo is not None
    assert fetched.started_at.utcoffset() == timedelta(0)


async def test_a_new_start_is_a_new_case(store: CaseStore) -> None:
    await store.record_alert(alert(), sensor_info(), DETECTED)
    later = alert(started_at=T0 + timedelta(hours=1))
    assert await store.record_alert(later, sensor_info(), DETECTED) is not None
    assert (await store.list_cases())[1] == 2


async def test_cleared_alert_clears_its_case(store: CaseStore) -> None:
    opened = alert()
    case = await store.record_alert(opened, sensor_info(), DETECTED)
    clear_seen = DETECTED + timedelta(minutes=6)
    done = await store.record_alert(cleared(opened), sensor_info(), clear_seen)

    assert case is not None
    assert done is not None
    assert (done.id, done.status) == (case.id, "cleared")
    assert done.cleared_at == opened.at + timedelta(minutes=5)
    assert done.updated_at == clear_seen
    assert done.detected_at == DETECTED
    assert await store.get_case(case.id) == done


async def test_clear_without_open_case_changes_nothing(store: CaseStore) -> None:
    opened = alert()
    assert await store.record_alert(cleared(opened), sensor_info(), DETECTED) is None
    await store.record_alert(opened, sensor_info(), DETECTED)
    assert await store.record_alert(cleared(opened), sensor_info(), DETECTED) is not None
    assert await store.record_alert(cleared(opened), sensor_info(), DETECTED) is None


@pytest.mark.parametrize(
    ("kind", "category", "code", "name"),
    [
        (SensorKind.COVER, "component", "0114", "无主井盖"),
        (SensorKind.POLE, "component", "0117", "立杆/电杆"),
        (SensorKind.PRESSURE, "event", "0402", "自来水管破裂"),
    ],
)
async def test_unregistered_sensor_gets_a_fallback_case(
    store: CaseStore, kind: SensorKind, category: str, code: str, name: str
) -> None:
    case = await store.record_alert(alert(kind=kind), None, DETECTED)

    assert case is not None
    assert (case.category, case.class_code, case.class_name) == (category, code, name)
    assert case.unregistered is True
    assert (case.component_id, case.grid_code, case.district_code) == (None, None, None)
    assert (case.lon, case.lat, case.address) == (None, None, "")


async def test_event_rule_uses_its_code(store: CaseStore) -> None:
    flood = alert(rule_id="cover-water", target=CaseTarget("event", "0406"))
    case = await store.record_alert(flood, sensor_info(), DETECTED)
    assert case is not None
    assert (case.category, case.class_code, case.class_name) == ("event", "0406", "道路积水")
    assert case.district_code == "410105"


async def test_naive_times_are_rejected(store: CaseStore) -> None:
    with pytest.raises(AlertRejectedError, match="timezone"):
        await store.record_alert(alert(), sensor_info(), datetime(2026, 7, 1, 8, 1))
    with pytest.raises(AlertRejectedError, match="timezone"):
        await store.record_alert(alert(started_at=datetime(2026, 7, 1)), None, DETECTED)
    with pytest.raises(AlertRejectedError, match="timezone"):
        await store.record_alert(cleared(alert(started_at=datetime(2026, 7, 1))), None, DETECTED)
    assert (await store.list_cases())[1] == 0


async def test_sensor_must_match_the_alert(store: CaseStore) -> None:
    with pytest.raises(AlertRejectedError, match="st-9"):
        await store.record_alert(alert(), sensor_info(sensor_id="st-9.cover-01"), DETECTED)


async def _seed(store: CaseStore) -> None:
    """Six cases: stations st-1/st-2, two classes, one cleared; opened and detected 1 minute
    apart."""
    for n in range(6):
        station = f"st-{1 + n % 2}"
        sensor_id = f"{station}.cover-{n:02d}"
        opened = alert(
            station_id=station,
            sensor_id=sensor_id,
            started_at=T0 + timedelta(minutes=n),
        )
        code = "0103" if n < 4 else "0111"
        arrived = DETECTED + timedelta(minutes=n)
        await store.record_alert(opened, sensor_info(sensor_id, class_code=code), arrived)
        if n == 0:
            await store.record_alert(cleared(opened), None, DETECTED)


async def test_list_is_newest_first_with_total(store: CaseStore) -> None:
    await _seed(store)
    items, total = await store.list_cases()
    assert total == 6
    assert [case.sensor_id[-2:] for case in items] == ["05", "04", "03", "02", "01", "00"]


async def test_list_pages(store: CaseStore) -> None:
    await _seed(store)
    first, total = await store.list_cases(limit=4)
    second, again = await store.list_cases(limit=4, offset=4)
    assert (total, again) == (6, 6)
    assert [len(first), len(second)] == [4, 2]
    assert {case.id for case in first}.isdisjoint({case.id for case in second})


async def test_list_filters(store: CaseStore) -> None:
    await _seed(store)
    assert (await store.list_cases(CaseFilter(status="cleared")))[1] == 1
    assert (await store.list_cases(CaseFilter(status="open")))[1] == 5
    assert (await store.list_cases(CaseFilter(class_codes=("0111",))))[1] == 2
    assert (await store.list_cases(CaseFilter(station_id="st-2")))[1] == 3
    assert (await store.list_cases(CaseFilter(sensor_id="st-1.cover-02")))[1] == 1
    since = DETECTED.astimezone(BEIJING) + timedelta(minutes=3)
    items, total = await store.list_cases(CaseFilter(since=since))
    assert total == 3
    assert all(case.detected_at >= since for case in items)
    both = CaseFilter(station_id="st-1", class_codes=("0103",), status="open")
    assert (await store.list_cases(both))[1] == 1


async def test_get_unknown_case_is_none(store: CaseStore) -> None:
    assert await store.get_case(404) is None


async def test_list_rejects_bad_paging(store: CaseStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_cases(limit=0)


async def test_a_member_joining_updates_the_open_case(store: CaseStore) -> None:
    opened = alert(sensor_id="st-1.p-01", kind=SensorKind.PRESSURE)
    first = await store.record_alert(opened, None, DETECTED)
    joined = transition(opened, "member", timedelta(seconds=30), members=("st-1.p-01", "st-1.p-02"))
    case = await store.record_alert(joined, None, DETECTED + timedelta(seconds=30))
    assert first is not None
    assert case is not None
    assert (case.id, case.members, case.status) == (first.id, ["st-1.p-01", "st-1.p-02"], "open")
    assert first.members == ["st-1.p-01"]
    assert await store.open_incidents() == [
        ("cover-tilt", "st-1.p-01", T0, ["st-1.p-01", "st-1.p-02"])
    ]


async def test_a_flapping_alert_reopens_its_cleared_case_marked(store: CaseStore) -> None:
    opened = alert()
    first = await store.record_alert(opened, sensor_info(), DETECTED)
    await store.record_alert(cleared(opened), sensor_info(), DETECTED)
    flapping = transition(opened, "flapping", timedelta(minutes=8), flags=("flapping",))
    case = await store.record_alert(flapping, sensor_info(), DETECTED + timedelta(minutes=8))
    assert first is not None
    assert case is not None
    assert case.id == first.id
    assert (case.status, case.cleared_at, case.flapping, case.flags) == (
        "open",
        None,
        True,
        ["flapping"],
    )
    _, total = await store.list_cases()
    assert total == 1


async def test_a_member_of_no_case_changes_nothing(store: CaseStore) -> None:
    orphan = transition(alert(), "member", timedelta(seconds=5), members=("a", "b"))
    assert await store.record_alert(orphan, None, DETECTED) is None


async def test_alerts_applied_together_are_one_transaction_each_with_its_outcome(
    store: CaseStore,
) -> None:
    first = alert(sensor_id="st-1.cover-01")
    other = alert(sensor_id="st-1.cover-02", started_at=T0 + timedelta(minutes=1))
    wrong_sensor = alert(sensor_id="st-1.cover-03")
    outcomes = await store.apply_alerts(
        [
            (first, sensor_info("st-1.cover-01"), DETECTED),
            (cleared(first), None, DETECTED + timedelta(minutes=6)),  # the same case, recovered
            (wrong_sensor, sensor_info("st-1.cover-09"), DETECTED),  # refused alone
            (other, sensor_info("st-1.cover-02"), DETECTED),
            (first, sensor_info("st-1.cover-01"), DETECTED),  # a duplicate: nothing changes
        ]
    )
    opened, recovered, refused, second, duplicate = outcomes
    assert isinstance(refused, AlertRejectedError)
    assert duplicate is None
    assert opened is not None
    assert recovered is not None
    assert second is not None
    assert not isinstance(opened, Exception)
    assert not isinstance(recovered, Exception)
    assert not isinstance(second, Exception)
    assert (opened.case.status, recovered.case.status) == ("open", "cleared")  # not stale
    assert recovered.case.step == opened.case.step == "register"  # the system's move kept
    assert recovered.case.id == opened.case.id != second.case.id
    assert [e.type for e in recovered.events] == ["recovered"]
    events = await store.events_after(0)
    assert [e.id for e in events] == [e.id for c in (opened, recovered, second) for e in c.events]
    assert (await store.list_cases())[1] == 2


async def test_a_failing_database_writes_none_of_the_alerts(
    store: CaseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from center.case_log import CaseLog

    calls = 0
    original = CaseLog.discovered

    def second_fails(self: CaseLog, row: object, note: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk I/O error")
        original(self, row, note)  # type: ignore[arg-type]

    monkeypatch.setattr(CaseLog, "discovered", second_fails)
    items = [
        (alert(sensor_id=f"st-1.cover-0{i}"), sensor_info(f"st-1.cover-0{i}"), DETECTED)
        for i in (1, 2)
    ]
    with pytest.raises(StoreError):
        await store.apply_alerts(items)
    assert (await store.list_cases())[1] == 0
    assert await store.events_after(0) == []


async def test_writers_on_sqlite_take_turns_instead_of_waiting_in_its_busy_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cases and delivery cursors written at once from one process: with SQLite's busy
    timeout at 0, a second writer that found the database locked would fail at once
    ("database is locked"); taking turns (``center.db.one_writer``), none does."""

    def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    monkeypatch.setattr(db, "sqlite_pragmas", no_busy_wait)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    await migrate(url)
    engine = create_engine(url)
    try:
        store, cursors = CaseStore(engine), CursorStore(engine)
        await cursors.open("webhook:a", "beginning", DETECTED)

        async def cases() -> None:
            for i in range(30):
                sensor = f"st-1.cover-{i:02d}"
                await store.apply_alert(alert(sensor_id=sensor), sensor_info(sensor), DETECTED)

        async def advances() -> None:
            for i in range(1, 61):
                await cursors.advance("webhook:a", i, DETECTED)

        await asyncio.gather(cases(), advances(), advances())
        assert (await store.list_cases())[1] == 30
    finally:
        await engine.dispose()
