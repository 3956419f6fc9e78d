"""Finding cases (SQLite and PostgreSQL): every filter of ``GET /api/v1/cases``, the orders,
paging with a total, free-text search with ``%`` and ``_`` taken literally, and every bad value
refused with a 422 that says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from center import Accounts, CaseBroadcaster, CaseService, CaseStore, create_app
from center.auth import Role
from center.case_query import CaseFilter
from center.lifecycle import Action
from protocol import SensorInfo, SensorKind
from rules.alerts import CaseTarget, Severity
from tests.center.auth import bearer
from tests.center.factories import DETECTED, T0, alert

NOW = DETECTED + timedelta(hours=1)
OF_THE_ASSET = CaseTarget("component")


@dataclass(frozen=True)
class Made:
    """One case of the set: where it is, what it is, when the center learned of it (the n-th
    minute after ``DETECTED``) and when it opened (hours after ``T0``, the other way round)."""

    name: str
    sensor_id: str
    kind: SensorKind
    severity: Severity
    class_code: str | None  # None: a sensor the registry does not know
    district: str = "410105"
    grid: str = "41010500100201"
    address: str = ""
    target: CaseTarget = OF_THE_ASSET

    def sensor(self) -> SensorInfo | None:
        if self.class_code is None:
            return None
        return SensorInfo(
            sensor_id=self.sensor_id,
            kind=self.kind,
            class_code=self.class_code,
            component_id=f"{self.district}{self.class_code}000123",
            grid_code=self.grid,
            lon=113.68,
            lat=34.78,
            address=self.address,
        )


COVER, POLE, PRESSURE = SensorKind.COVER, SensorKind.POLE, SensorKind.PRESSURE
CITY = (
    Made("a", "st-a.cover-01", COVER, "urgent", "0103", address="郑州市金水区农业路12号附近"),
    Made("b", "st-a.cover-02", COVER, "critical", "0111", grid="41010500100202",
         address="农业路 100%_段"),
    Made("c", "st-b.pole-01", POLE, "warning", "0118", "410103", "41010300200101",
         address="航海路 7 号 Street Lamp"),
    Made("d", "st-b.p-01", PRESSURE, "urgent", "0101", "410103", "41010300200101",
         address="航海路", target=CaseTarget("event", "0402")),
    Made("e", "st-c.cover-09", COVER, "maintenance", None),
    Made("f", "st-a.cover-03", COVER, "maintenance", "0103", address="农业路 3 号"),
)  # fmt: skip
"""a, b, d: emergencies, registered by the system and dispatched by an operator; c, e wait at
discover; f is dismissed (close).
e's sensor is unknown: class 0114, no district, no grid. b's address holds ``%`` and ``_``."""


def detected(n: int) -> datetime:
    return DETECTED + timedelta(minutes=n)


def opened(n: int) -> datetime:
    return T0 + timedelta(hours=len(CITY) - n, seconds=10)


@pytest.fixture
def service(store: CaseStore) -> CaseService:
    return CaseService(store, CaseBroadcaster(), clock=lambda: NOW)


@pytest.fixture
async def city(service: CaseService) -> dict[str, int]:
    """The set, in the store; its case ids by name."""
    ids: dict[str, int] = {}
    for n, made in enumerate(CITY):
        started = opened(n) - timedelta(seconds=10)
        raised = alert(
            rule_id=f"rule-{made.name}",
            station_id=made.sensor_id.split(".")[0],
            sensor_id=made.sensor_id,
            kind=made.kind,
            started_at=started,
            severity=made.severity,
            target=made.target,
        )
        await service.handle_alert(raised, made.sensor(), detected(n))
        (case,), _ = await service.store.list_cases(CaseFilter(sensor_id=made.sensor_id))
        ids[made.name] = case.id
    await service.transition(ids["f"], action=Action.DISMISS, actor="王工", note="duplicate")
    for name in "abd":
        await service.transition(ids[name], action=Action.DISPATCH, actor="王工")
    return ids


@pytest.fixture
async def client(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str]
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service, auth=accounts))
    headers = bearer(tokens[Role.VIEWER])
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=headers
    ) as client:
        yield client


async def names(client: httpx.AsyncClient, params: Any) -> list[str]:
    """The names of the cases listed, in order (after checking ``total``)."""
    response = await client.get("/api/v1/cases", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    by_sensor = {made.sensor_id: made.name for made in CITY}
    return [by_sensor[item["sensor_id"]] for item in body["items"]]


def iso(moment: datetime) -> str:
    return moment.isoformat()


FILTERS: list[tuple[dict[str, Any], str]] = [
    ({}, "fedcba"),
    ({"status": "open"}, "fedcba"),
    ({"step": "dispatch"}, "dba"),
    ({"step": ["discover", "close"]}, "fec"),
    ({"open_only": "true"}, "edcba"),
    ({"class_code": "0103"}, "fa"),
    ({"class_code": ["0103", "0402"]}, "fda"),
    ({"category": "event"}, "d"),
    ({"category": "component"}, "fecba"),
    ({"severity": ["critical", "warning"]}, "cb"),
    ({"district": "410103"}, "dc"),
    ({"grid": "41010500100202"}, "b"),
    ({"station_id": "st-b"}, "dc"),
    ({"sensor_id": "st-c.cover-09"}, "e"),
    ({"since": iso(detected(2))}, "fedc"),
    ({"until": iso(detected(2))}, "ba"),
    ({"since": iso(detected(1)), "until": iso(detected(3))}, "cb"),
    ({"opened_from": iso(opened(2))}, "cba"),
    ({"opened_to": iso(opened(2))}, "fed"),
    ({"opened_from": iso(opened(4)), "opened_to": iso(opened(1))}, "edc"),
    ({"district": "410105", "severity": "maintenance", "open_only": "true"}, ""),
    ({"district": "410105", "step": "close"}, "f"),
    ({"since": iso(detected(3)), "until": iso(detected(1))}, ""),  # an empty window, no error
    ({"since": iso(detected(1)), "until": iso(detected(1))}, ""),
    ({"opened_from": iso(opened(1)), "opened_to": iso(opened(4))}, ""),
    # The ends of the calendar: past the range of UTC once normalised, and still a time.
    ({"since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59-14:00"}, "fedcba"),
    ({"opened_to": "0001-01-01T00:00:00+14:00"}, ""),
    ({"opened_from": "9999-12-31T23:59:59-14:00"}, ""),
]


async def test_every_filter(client: httpx.AsyncClient, city: dict[str, int]) -> None:
    found = [(params, "".join(await names(client, params))) for params, _ in FILTERS]
    assert found == FILTERS


SEARCHES = [
    ("农业路", "fba"),  # the address
    ("%", "b"),  # taken literally: not "anything"
    ("100%_", "b"),
    ("_", "b"),
    ("street lamp", "c"),  # any case
    ("ST-B", "dc"),  # the station id
    ("cover-0", "feba"),  # the sensor id
    ("雨水井盖", "fa"),  # the class name
    ("自来水管破裂", "d"),
    ("井盖倾斜", "fedcba"),  # the title
    ("nowhere", ""),
]


async def test_search(client: httpx.AsyncClient, city: dict[str, int]) -> None:
    found = [(text, "".join(await names(client, {"q": text}))) for text, _ in SEARCHES]
    assert found == SEARCHES


ORDERS = [
    ("-detected_at", "fedcba"),
    ("detected_at", "abcdef"),
    ("opened_at", "fedcba"),
    ("-opened_at", "abcdef"),
    ("-severity", "bdacfe"),  # critical, urgent (newest first), warning, maintenance
    ("severity", "fecdab"),
    ("step", "ecdbaf"),  # discover, dispatch, close
    ("-step", "fdbaec"),
    ("id", "abcdef"),
    ("-id", "fedcba"),
    ("updated_at", "cefdba"),  # c, e as they arrived; a, b, d, f moved at NOW (then newest)
]


async def test_orders(client: httpx.AsyncClient, city: dict[str, int]) -> None:
    found = [(sort, "".join(await names(client, {"sort": sort}))) for sort, _ in ORDERS]
    assert found == ORDERS


async def test_pages_cover_every_match_once_with_the_total(
    client: httpx.AsyncClient, city: dict[str, int]
) -> None:
    seen: list[str] = []
    for offset in (0, 2, 4, 6):
        params = {"sort": "-severity", "limit": 2, "offset": offset, "open_only": "true"}
        body = (await client.get("/api/v1/cases", params=params)).json()
        assert body["total"] == 5
        by_sensor = {made.sensor_id: made.name for made in CITY}
        seen += [by_sensor[item["sensor_id"]] for item in body["items"]]
    assert "".join(seen) == "bdace"


async def test_the_store_takes_the_same_filter(store: CaseStore, city: dict[str, int]) -> None:
    items, total = await store.list_cases(
        CaseFilter(text="农业路", open_only=True), sort="detected_at", limit=1, offset=1
    )
    assert (total, [case.id for case in items]) == (2, [city["b"]])


OUT_OF_RANGE = str(2**31)
BAD_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"limit": 0}, "greater than or equal to 1"),
    ({"limit": 501}, "less than or equal to 500"),
    ({"offset": -1}, "greater than or equal to 0"),
    ({"offset": OUT_OF_RANGE}, "less than or equal to 2147483647"),
    ({"offset": str(2**63)}, "less than or equal to 2147483647"),
    ({"status": "lost"}, "'open' or 'cleared'"),
    ({"step": ["dispatch", "lost"]}, "'discover'"),
    ({"class_code": ["0103", "01"]}, "pattern"),
    ({"class_code": "٠١٠٣"}, "pattern"),  # Arabic-Indic digits are not a class
    ({"category": "thing"}, "'component' or 'event'"),
    ({"severity": "bad"}, "'critical'"),
    ({"district": "41010"}, "pattern"),
    ({"grid": "4101050010020x"}, "pattern"),
    ({"station_id": "st-1\x00"}, "pattern"),
    ({"sensor_id": "\x00"}, "pattern"),
    ({"q": "cover\x00"}, "pattern"),
    ({"q": ""}, "at least 1 character"),
    ({"q": "x" * 101}, "at most 100 characters"),
    ({"sort": "title"}, "'-detected_at'"),
    ({"open_only": "maybe"}, "valid boolean"),
    ({"since": "2026-07-01T08:00:00"}, "timezone"),
    ({"since": "0.5"}, "ISO 8601"),
    ({"since": "1700000000"}, "ISO 8601"),
    ({"since": "2026-13-01T00:00:00Z"}, "valid datetime"),
]


async def test_bad_values_are_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    for params, message in BAD_QUERIES:
        response = await client.get("/api/v1/cases", params=params)
        assert (response.status_code, message in response.text) == (422, True), (
            params,
            response.text,
        )


async def test_a_case_id_outside_the_id_range_is_refused(
    client: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    operator = bearer(tokens[Role.OPERATOR])
    for case_id in ["0", "-1", OUT_OF_RANGE, str(2**64), "1.5", "x"]:
        for route in ["", "/history"]:
            response = await client.get(f"/api/v1/cases/{case_id}{route}")
            assert response.status_code == 422, (case_id, route, response.text)
        response = await client.post(
            f"/api/v1/cases/{case_id}/transitions", json={"action": "register"}, headers=operator
        )
        assert response.status_code == 422, (case_id, response.text)


async def test_an_id_in_range_that_names_no_case_is_not_found(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/v1/cases/{2**31 - 1}")).status_code == 404
    assert (await client.get(f"/api/v1/cases/{2**31 - 1}/history")).status_code == 404
