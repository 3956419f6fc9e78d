"""The HTTP API over a real store (SQLite and PostgreSQL), through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from center import Accounts, CaseBroadcaster, CaseService, CaseStore, create_app, create_engine
from center.api.dashboard import MODULES
from center.auth import Role
from tests.center.auth import bearer, signed_in_client
from tests.center.factories import DETECTED, T0, alert, cleared, sensor_info


@pytest.fixture
async def client(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        service,
        auth=accounts,
        health=lambda: {"cases_opened": service.stats.opened},
        metrics=lambda: (
            b"# TYPE citysense_cases_opened_total counter\ncitysense_cases_opened_total 1\n"
        ),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=bearer(tokens[Role.VIEWER])
    ) as client:
        yield client


async def _open_cases(service: CaseService, count: int) -> None:
    for n in range(count):
        sensor_id = f"st-1.cover-{n:02d}"
        opened = alert(sensor_id=sensor_id, started_at=T0 + timedelta(minutes=n))
        arrived = DETECTED + timedelta(minutes=n)
        await service.handle_alert(opened, sensor_info(sensor_id), arrived)


async def test_list_cases(client: httpx.AsyncClient, service: CaseService) -> None:
    await _open_cases(service, 3)
    response = await client.get("/api/v1/cases")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 3
    assert [case["sensor_id"] for case in body["items"]] == [
        "st-1.cover-02",
        "st-1.cover-01",
        "st-1.cover-00",
    ]
    first = body["items"][0]
    assert (first["class_code"], first["class_name"], first["status"]) == (
        "0103",
        "雨水井盖",
        "open",
    )
    assert first["opened_at"] == "2026-07-01T08:02:10Z"
    assert first["evidence"][0] == {"ts": "2026-07-01T08:02:00Z", "value": 35.0}


async def test_list_filters_and_pages(client: httpx.AsyncClient, service: CaseService) -> None:
    await _open_cases(service, 5)
    first = alert(sensor_id="st-1.cover-00", started_at=T0)
    await service.handle_alert(cleared(first), None, DETECTED)

    page = (await client.get("/api/v1/cases", params={"limit": 2, "offset": 1})).json()
    assert (page["total"], len(page["items"])) == (5, 2)
    assert page["items"][0]["sensor_id"] == "st-1.cover-03"
    done = (await client.get("/api/v1/cases", params={"status": "cleared"})).json()
    assert [case["sensor_id"] for case in done["items"]] == ["st-1.cover-00"]
    since = (
        await client.get("/api/v1/cases", params={"since": "2026-07-01T16:04:00+08:00"})
    ).json()
    assert since["total"] == 2
    filtered = await client.get(
        "/api/v1/cases",
        params={"class_code": "0103", "station_id": "st-1", "sensor_id": "st-1.cover-04"},
    )
    assert filtered.json()["total"] == 1


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"status": "lost"}, {"class_code": "01"},
     {"since": "2026-07-01T08:00:00"}],
)  # fmt: skip
async def test_list_rejects_bad_queries(
    client: httpx.AsyncClient, params: dict[str, str | int]
) -> None:
    response = await client.get("/api/v1/cases", params=params)
    assert response.status_code == 422


async def test_get_case(client: httpx.AsyncClient, service: CaseService) -> None:
    await _open_cases(service, 1)
    case_id = (await client.get("/api/v1/cases")).json()["items"][0]["id"]

    response = await client.get(f"/api/v1/cases/{case_id}")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["district_code"]) == (case_id, "410105")


async def test_unknown_case_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/cases/999")
    assert response.status_code == 404
    assert response.json() == {"detail": "case 999 not found"}


async def test_healthz_and_metrics(client: httpx.AsyncClient, service: CaseService) -> None:
    await _open_cases(service, 1)
    health = await client.get("/api/v1/health")
    assert health.json() == {"status": "ok", "cases_opened": 1}
    assert (await client.get("/healthz")).json() == {"status": "ok"}  # public: no counters
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "citysense_cases_opened_total 1" in metrics.text


async def test_no_metrics_exporter_means_404(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str]
) -> None:
    transport = httpx.ASGITransport(app=create_app(service, auth=accounts))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=bearer(tokens[Role.VIEWER])
    ) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/api/v1/health")).json() == {"status": "ok"}


async def test_dashboard_listens_to_the_stream(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/dashboard.js"' in response.text
    script = await client.get("/static/dashboard.js")
    assert script.status_code == 200
    assert "new EventSource(" in script.text
    assert "/cases/stream" in script.text
    modules = [(await client.get(f"/static/{name}.js")).text for name in sorted(MODULES)]
    for name in MODULES - {"dashboard"}:  # each module is one the page imports
        assert f'from "./{name}.js"' in "\n".join(modules), name
    for text in (response.text, *modules, (await client.get("/static/dashboard.css")).text):
        body = text.replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in body  # self-contained: no CDN, no tile server
        assert "https://" not in body


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/cases/stream", "/healthz"} <= set(
        paths
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/cases", None),
        ("GET", "/api/v1/cases/stream", None),  # before the stream starts: not a 200
        ("GET", "/api/v1/cases/1/history", None),
        ("POST", "/api/v1/cases/1/transitions", {"action": "register"}),
    ],
)
async def test_store_failure_is_a_json_503(
    method: str, path: str, body: dict[str, str] | None
) -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    broken = CaseService(CaseStore(engine), CaseBroadcaster())
    try:
        async with signed_in_client(
            lambda auth: create_app(broken, auth=auth), Role.OPERATOR
        ) as client:
            response = await client.request(method, path, json=body)
    finally:
        await engine.dispose()
    assert response.status_code == 503
    assert response.json() == {"detail": "case store unavailable"}
    assert broken.broadcaster.subscriber_count == 0
