"""``/api/v1/stations`` and ``/api/v1/sensors/{id}`` over the real in-memory registry."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest

from center import CaseBroadcaster, CaseService, CaseStore, create_app, create_engine
from ingest.registry import StationRegistry
from protocol import StationState
from tests.center.auth import signed_in_client
from tests.factories import T0, batch, birth, cover_info, tilt

NOW = T0 + timedelta(minutes=10)


def unconnected_service() -> CaseService:
    """A case service whose database is never touched by these routes."""
    return CaseService(CaseStore(create_engine("sqlite+aiosqlite:///:memory:")), CaseBroadcaster())


@pytest.fixture
def registry() -> StationRegistry:
    now = [NOW]
    registry = StationRegistry(silent_after=timedelta(minutes=5), clock=lambda: now[0])
    registry.update(birth("st-a", [cover_info("st-a.cover-1"), cover_info("st-a.cover-2")]), T0)
    registry.update(birth("st-b", [cover_info("st-b.cover-1")]), NOW)
    registry.saw_batch(batch([tilt(1, 3.5, "st-b.cover-1")], station_id="st-b"), NOW)
    registry.update(StationState(station_id="st-c", status="offline", boot_epoch=4, ts=T0), NOW)
    return registry


async def _client(registry: StationRegistry | None) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in_client(
        lambda auth: create_app(unconnected_service(), auth=auth, registry=registry)
    ) as client:
        yield client


@pytest.fixture
async def client(registry: StationRegistry) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(registry):
        yield client


async def test_stations_list_presence_last_seen_and_sensor_count(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/api/v1/stations")).json()
    assert body["total"] == 3
    assert [(s["station_id"], s["status"], s["sensor_count"]) for s in body["items"]] == [
        ("st-a", "silent", 2),
        ("st-b", "online", 1),
        ("st-c", "offline", 0),
    ]
    assert body["items"][1]["last_seen"] == "2026-07-01T08:10:00Z"
    assert body["items"][0]["status_since"] == "2026-07-01T08:00:00Z"


async def test_stations_filter_and_page(client: httpx.AsyncClient) -> None:
    online = (await client.get("/api/v1/stations", params={"status": "online"})).json()
    assert [s["station_id"] for s in online["items"]] == ["st-b"]
    page = (await client.get("/api/v1/stations", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], [s["station_id"] for s in page["items"]]) == (3, ["st-b"])
    assert (await client.get("/api/v1/stations", params={"limit": 0})).status_code == 422


async def test_sensor_with_birth_info_and_latest_reading(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/sensors/st-b.cover-1")
    assert response.status_code == 200
    sensor = response.json()
    assert sensor["registered"] is True
    assert (sensor["owner_station_id"], sensor["reporting_station_id"]) == ("st-b", "st-b")
    assert (sensor["kind"], sensor["class_code"], sensor["lon"]) == ("cover", "0103", 113.68)
    assert sensor["last_seen"] == "2026-07-01T08:10:00Z"
    assert sensor["latest"] == {"ts": "2026-07-01T08:00:01Z", "values": {"tilt_deg": 3.5}}


async def test_sensor_born_but_silent_has_no_latest(client: httpx.AsyncClient) -> None:
    sensor = (await client.get("/api/v1/sensors/st-a.cover-2")).json()
    assert (sensor["last_seen"], sensor["latest"], sensor["owner_station_id"]) == (
        None,
        None,
        "st-a",
    )


async def test_unknown_sensor_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/sensors/nobody")
    assert (response.status_code, response.json()) == (404, {"detail": "sensor nobody not known"})


async def test_without_a_registry_the_routes_answer_503() -> None:
    async for client in _client(None):
        assert (await client.get("/api/v1/stations")).status_code == 503
        assert (await client.get("/api/v1/sensors/x")).status_code == 503


def test_registry_last_seen_is_wall_time(registry: StationRegistry) -> None:
    (station,) = [s for s in registry.stations() if s.station_id == "st-b"]
    assert isinstance(station.last_seen, datetime)


async def test_the_map_places_districts_and_stations_at_the_mean_of_their_sensors() -> None:
    registry = StationRegistry(clock=lambda: NOW)
    west = cover_info("st-a.cover-1").model_copy(update={"lon": 113.60, "lat": 34.70})
    east = cover_info("st-a.cover-2").model_copy(update={"lon": 113.70, "lat": 34.80})
    other = cover_info("st-b.cover-1").model_copy(
        update={"component_id": "4109990103000001", "lon": 113.90, "lat": 34.90}
    )
    registry.update(birth("st-a", [west, east]), NOW)
    registry.update(birth("st-b", [other]), NOW)
    async for client in _client(registry):
        body = (await client.get("/api/v1/map")).json()
    outlines = [d.pop("outline") for d in body["districts"]]
    assert body["districts"] == [
        {"code": "410105", "name": "金水区", "lon": 113.65, "lat": 34.75, "sensors": 2},
        {"code": "410999", "name": None, "lon": 113.9, "lat": 34.9, "sensors": 1},
    ]
    assert [len(corners) for corners in outlines] == [10, 8]  # a stadium, an octagon (250 m)
    west_end = min(outlines[0])
    assert west_end[0] == pytest.approx(113.60 - 250 / 111_320 / math.cos(math.radians(34.75)))
    assert [(s["station_id"], s["status"], s["sensors"]) for s in body["stations"]] == [
        ("st-a", "online", 2),
        ("st-b", "online", 1),
    ]
    assert body["stations"][0]["lon"] == pytest.approx(113.65)
    assert [s["sensor_id"] for s in body["sensors"]] == [
        "st-a.cover-1",
        "st-a.cover-2",
        "st-b.cover-1",
    ]
    assert body["sensors"][0]["district"] == "410105"
    assert (body["sensors_total"], body["bounds"]) == (3, [113.6, 34.7, 113.9, 34.9])


async def test_the_map_of_a_node_without_a_registry_is_a_503() -> None:
    async for client in _client(None):
        assert (await client.get("/api/v1/map")).status_code == 503
