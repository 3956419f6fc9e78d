"""``/api/v1/rejects`` over real dead-letter files."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from center import create_app
from ingest.dead_letters import JsonlDeadLetters
from tests.center.auth import signed_in_client
from tests.center.factories import alert
from tests.center.test_registry_api import unconnected_service
from tests.factories import T0


@pytest.fixture
def dead(tmp_path: Path) -> JsonlDeadLetters:
    dead = JsonlDeadLetters(tmp_path / "dead.jsonl")
    dead.write("citysense/v1/stations/st-1/telemetry", b"{oops", "not_json", "Expecting", T0)
    dead.write("bogus/topic", b"x", "bad_topic", "outside", T0 + timedelta(minutes=1))
    dead.write_alert(alert(station_id="st-2"), "alert_refused", "no class", T0 + timedelta(hours=1))
    return dead


@pytest.fixture
async def client(dead: JsonlDeadLetters) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in_client(
        lambda auth: create_app(unconnected_service(), auth=auth, rejects=dead)
    ) as client:
        yield client


async def test_rejects_newest_first_with_payload_and_size(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/rejects")).json()
    assert body["total"] == 3
    assert [(i["id"], i["kind"], i["reason"]) for i in body["items"]] == [
        ("3", "alert", "alert_refused"),
        ("2", "message", "bad_topic"),
        ("1", "message", "not_json"),
    ]
    oldest = body["items"][2]
    assert oldest == {
        "id": "1",
        "kind": "message",
        "received_at": "2026-07-01T08:00:00Z",
        "topic": "citysense/v1/stations/st-1/telemetry",
        "station_id": "st-1",
        "reason": "not_json",
        "detail": "Expecting",
        "payload": base64.b64encode(b"{oops").decode(),
        "size": 5,
    }
    refused = json.loads(base64.b64decode(body["items"][0]["payload"]))
    assert (refused["rule_id"], refused["station_id"]) == ("cover-tilt", "st-2")


async def test_rejects_filters_and_paging(client: httpx.AsyncClient) -> None:
    async def ids(**params: str | int) -> tuple[int, list[str]]:
        body = (await client.get("/api/v1/rejects", params=params)).json()
        return body["total"], [item["id"] for item in body["items"]]

    assert await ids(reason="not_json") == (1, ["1"])
    assert await ids(station_id="st-2") == (1, ["3"])
    assert await ids(since="2026-07-01T08:01:00Z") == (2, ["3", "2"])
    assert await ids(limit=1, offset=1) == (3, ["2"])
    naive = await client.get("/api/v1/rejects", params={"since": "2026-07-01T08:01:00"})
    assert naive.status_code == 422


async def test_without_dead_letters_the_route_answers_503() -> None:
    async with signed_in_client(
        lambda auth: create_app(unconnected_service(), auth=auth)
    ) as client:
        response = await client.get("/api/v1/rejects")
    assert (response.status_code, response.json()) == (
        503,
        {"detail": "no dead letters on this node"},
    )
