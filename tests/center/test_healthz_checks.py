"""``/healthz`` with dependency checks: 200 only when every one is ok."""

from __future__ import annotations

import asyncio

import httpx

from center import create_app
from center.api import system
from center.views import HealthCheck
from tests.center.auth import memory_accounts
from tests.center.test_registry_api import unconnected_service


def check(ok: bool, detail: str) -> HealthCheck:
    async def probe() -> tuple[bool, str]:
        return ok, detail

    return probe


async def _healthz(checks: dict[str, HealthCheck]) -> httpx.Response:
    async with memory_accounts() as (accounts, _):
        app = create_app(
            unconnected_service(),
            auth=accounts,
            health=lambda: {"mqtt_connected": True, "sensors_registered": 3},
            checks=checks,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
            return await client.get("/healthz")  # public: no credential


async def test_all_checks_ok_is_200_with_the_existing_fields() -> None:
    response = await _healthz({"broker": check(True, "connected"), "database": check(True, "")})
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "mqtt_connected": True,
        "sensors_registered": 3,
        "checks": {
            "broker": {"ok": True, "detail": "connected"},
            "database": {"ok": True, "detail": ""},
        },
    }


async def test_one_dependency_down_is_503() -> None:
    response = await _healthz({"broker": check(True, ""), "tsdb": check(False, "refused")})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["tsdb"] == {"ok": False, "detail": "refused"}
    assert body["mqtt_connected"] is True


async def test_a_check_that_raises_or_hangs_counts_as_down() -> None:
    async def broken() -> tuple[bool, str]:
        raise ConnectionRefusedError("no route")

    async def hangs() -> tuple[bool, str]:
        await asyncio.sleep(60)
        return True, ""

    assert await system.run_check(broken) == {
        "ok": False,
        "detail": "ConnectionRefusedError: no route",
    }
    assert await system.run_check(hangs, limit_s=0.01) == {
        "ok": False,
        "detail": "no answer within 0.01s",
    }
    response = await _healthz({"database": broken})
    assert response.status_code == 503
