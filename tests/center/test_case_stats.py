"""``GET /api/v1/stats`` on a small hand-built set of cases moved at known times (SQLite and
PostgreSQL): every count, the closure rate and the percentiles, worked out by hand below."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from center import Accounts, CaseBroadcaster, CaseService, CaseStore, create_app
from center.auth import Role
from center.case_query import CaseFilter
from center.lifecycle import Action
from protocol import SensorInfo, SensorKind
from rules.alerts import Alert, CaseTarget, Severity
from tests.center.auth import bearer
from tests.center.factories import DETECTED, alert, cleared

G1, G2, G3 = "41010500100201", "41010500100202", "41010300200101"
MINUTE = timedelta(minutes=1)


class City:
    """A service whose clock the test sets: each move happens at a known time."""

    def __init__(self, store: CaseStore) -> None:
        self.now = DETECTED
        self.service = CaseService(store, CaseBroadcaster(), clock=lambda: self.now)
        self.alerts: dict[str, Alert] = {}
        self.ids: dict[str, int] = {}

    async def detect(
        self,
        name: str,
        at: datetime,
        severity: Severity,
        class_code: str | None,
        grid: str = G1,
        kind: SensorKind = SensorKind.COVER,
        target: CaseTarget | None = None,
    ) -> None:
        sensor_id = f"st-{name}.s-01"
        sensor = None
        if class_code is not None:
            sensor = SensorInfo(
                sensor_id=sensor_id,
                kind=kind,
                class_code=class_code,
                component_id=f"{grid[:6]}{class_code}000001",
                grid_code=grid,
                lon=113.6,
                lat=34.7,
            )
        raised = alert(
            sensor_id=sensor_id,
            station_id=f"st-{name}",
            kind=kind,
            started_at=at - timedelta(seconds=20),
            severity=severity,
            target=target,
        )
        await self.service.handle_alert(raised, sensor, at)
        (case,), _ = await self.service.store.list_cases(CaseFilter(sensor_id=sensor_id))
        self.alerts[name], self.ids[name] = raised, case.id

    async def move(self, name: str, at: datetime, *actions: Action, note: str = "") -> None:
        self.now = at
        for action in actions:
            await self.service.transition(self.ids[name], action=action, actor="王工", note=note)

    async def recover(self, name: str) -> None:
        await self.service.handle_alert(cleared(self.alerts[name]), None, self.now)


D = DETECTED


@pytest.fixture
async def city(store: CaseStore) -> City:
    """Six cases the center learned of within a day of ``D``, one two days later:

    ====  ===========  =====  ========  =====  ==================================  ==========
    case  severity     class  district  grid   moves (after it was detected)         step now
    ====  ===========  =====  ========  =====  ==================================  ==========
    a     urgent       0103   410105    G1     system 0 s; acknowledge 2 m,          close
                                               dispatch 5 m, handle 10 m, close 40 m
    b     critical     0111   410105    G2     system 0 s; dispatch 2 m              dispatch
    c     warning      0118   410103    G3     register 5 m, dispatch 15 m,          evaluate
                                               handle 20 m, close 60 m, evaluate
    d     maintenance  0103   410105    G1     dismissed at 1 m                      close
    e     urgent       0402e  410103    G3     system 0 s; acknowledge 2 m           register
    f     maintenance  0114   —         —      register 10 m (an unknown sensor)     register
    g     urgent       0103   410105    G1     system 0 s, two days later            register
    ====  ===========  =====  ========  =====  ==================================  ==========
    """
    city = City(store)
    event = CaseTarget("event", "0402")
    await city.detect("a", D, "urgent", "0103")
    await city.detect("b", D + MINUTE, "critical", "0111", G2)
    await city.detect("c", D + 2 * MINUTE, "warning", "0118", G3, SensorKind.POLE)
    await city.detect("d", D + 3 * MINUTE, "maintenance", "0103")
    await city.detect("e", D + 4 * MINUTE, "urgent", "0101", G3, SensorKind.PRESSURE, event)
    await city.detect("f", D + 5 * MINUTE, "maintenance", None)
    await city.detect("g", D + timedelta(days=2), "urgent", "0103")
    await city.move("a", D + 2 * MINUTE, Action.ACKNOWLEDGE)
    await city.move("a", D + 5 * MINUTE, Action.DISPATCH)
    await city.move("a", D + 10 * MINUTE, Action.HANDLE)
    await city.recover("a")
    await city.move("a", D + 30 * MINUTE, Action.VERIFY)
    await city.move("a", D + 40 * MINUTE, Action.CLOSE)
    await city.move("b", D + 3 * MINUTE, Action.DISPATCH)
    await city.move("c", D + 7 * MINUTE, Action.REGISTER)
    await city.move("c", D + 17 * MINUTE, Action.DISPATCH)
    await city.move("c", D + 22 * MINUTE, Action.HANDLE)
    await city.recover("c")
    await city.move("c", D + 52 * MINUTE, Action.VERIFY)
    await city.move("c", D + 62 * MINUTE, Action.CLOSE)
    await city.move("c", D + 72 * MINUTE, Action.EVALUATE)
    await city.move("d", D + 4 * MINUTE, Action.DISMISS, note="duplicate of a")
    await city.move("e", D + 6 * MINUTE, Action.ACKNOWLEDGE)
    await city.move("f", D + 15 * MINUTE, Action.REGISTER)
    return city


@pytest.fixture
async def client(
    city: City, accounts: Accounts, tokens: dict[Role, str]
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(city.service, auth=accounts))
    headers = bearer(tokens[Role.VIEWER])
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=headers
    ) as client:
        yield client


async def stats(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/stats", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


DAY = {"since": D.isoformat(), "until": (D + timedelta(days=1)).isoformat()}


async def test_counts_by_step_status_district_class_and_grid(client: httpx.AsyncClient) -> None:
    body = await stats(client, **DAY)
    assert (body["since"], body["until"]) == ("2026-07-01T08:01:00Z", "2026-07-02T08:01:00Z")
    assert body["total"] == 6
    assert body["by_step"] == {
        "discover": 0,
        "register": 2,
        "dispatch": 1,
        "handle": 0,
        "verify": 0,
        "close": 2,
        "evaluate": 1,
    }
    assert body["by_status"] == {"open": 4, "cleared": 2}
    assert [(r["district_code"], r["total"], r["closed"]) for r in body["by_district"]] == [
        ("410105", 3, 2),
        ("410103", 2, 1),
        (None, 1, 0),
    ]
    assert [
        (r["category"], r["class_code"], r["major_code"], r["total"], r["closed"])
        for r in body["by_class"]
    ] == [
        ("component", "0103", "01", 2, 2),
        ("component", "0111", "01", 1, 0),
        ("component", "0114", "01", 1, 0),
        ("component", "0118", "01", 1, 1),
        ("event", "0402", "04", 1, 0),
    ]
    assert body["by_class"][0]["class_name"] == "雨水井盖"
    assert [
        (r["category"], r["major_code"], r["major_name"], r["total"], r["closed"])
        for r in body["by_major_class"]
    ] == [("component", "01", "公用设施", 5, 3), ("event", "04", "突发事件", 1, 0)]
    assert [(r["grid_code"], r["total"], r["closed"]) for r in body["by_grid"]] == [
        (G3, 2, 1),  # ties by grid code
        (G1, 2, 2),
        (G2, 1, 0),
        (None, 1, 0),  # the unknown sensor's, last
    ]


async def test_closure_rate_and_times_from_the_audit_trail(client: httpx.AsyncClient) -> None:
    body = await stats(client, **DAY)
    # Registered: a, b, c, e, f (d was dismissed before it was a case); closed: a, c.
    assert (body["registered"], body["closed"], body["closure_rate"]) == (5, 2, 0.4)
    assert body["time_to"] == {
        # A person's first action, the system's registration not counted: d 60 s (dismissed),
        # a, e 120 s (acknowledge), b 120 s (dispatch), c 300 s, f 600 s (register)
        "acknowledge": {"count": 6, "p50_s": 120.0, "p90_s": 600.0},
        # b 120 s, a 300 s, c 900 s
        "dispatch": {"count": 3, "p50_s": 300.0, "p90_s": 900.0},
        # a 600 s, c 1200 s
        "handle": {"count": 2, "p50_s": 600.0, "p90_s": 1200.0},
        # a 2400 s, c 3600 s; d was dismissed, not closed after verification
        "close": {"count": 2, "p50_s": 2400.0, "p90_s": 3600.0},
    }


async def test_the_window_is_on_arrival(client: httpx.AsyncClient) -> None:
    everything = await stats(client)
    assert (everything["since"], everything["total"], everything["registered"]) == (None, 7, 6)
    assert everything["time_to"]["acknowledge"]["count"] == 6  # g: nobody yet
    later = await stats(client, since=(D + timedelta(days=1)).isoformat())
    assert (later["total"], later["by_step"]["register"], later["closure_rate"]) == (1, 1, 0.0)


@pytest.mark.parametrize(
    "window",
    [{"until": D.isoformat()}, {"since": DAY["until"], "until": DAY["since"]}],
)
async def test_an_empty_window(client: httpx.AsyncClient, window: dict[str, str]) -> None:
    body = await stats(client, **window)
    assert (body["total"], body["registered"], body["closure_rate"]) == (0, 0, None)
    assert set(body["by_step"].values()) == {0}
    assert body["by_status"] == {"open": 0, "cleared": 0}
    assert (body["by_district"], body["by_class"], body["by_grid"]) == ([], [], [])
    assert body["time_to"]["close"] == {"count": 0, "p50_s": None, "p90_s": None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2026-07-01T08:00:00"}, "timezone"),
        ({"until": "2026-02-30T00:00:00Z"}, "valid datetime"),
        ({"since": "12"}, "ISO 8601"),
    ],
)
async def test_bad_windows_are_refused(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await client.get("/api/v1/stats", params=params)
    assert (response.status_code, message in response.text) == (422, True), response.text


async def test_a_window_of_too_many_cases_is_refused(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("center.stats.MAX_CASES", 5)
    response = await client.get("/api/v1/stats")
    assert response.status_code == 422
    assert "holds 7 cases" in response.json()["detail"][0]["msg"]
    assert (await client.get("/api/v1/stats", params=DAY)).status_code == 422
    assert (await client.get("/api/v1/stats", params={"until": DAY["until"]})).status_code == 422
    narrow = {"since": (D + timedelta(days=1)).isoformat()}
    assert (await client.get("/api/v1/stats", params=narrow)).status_code == 200


def test_nearest_rank_percentiles() -> None:
    from center.stats import percentile

    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    values = [float(n) for n in range(1, 11)]
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 1.0)) == (
        5.0,
        9.0,
        10.0,
    )
