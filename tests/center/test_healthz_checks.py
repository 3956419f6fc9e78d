"""``/healthz`` and ``/api/v1/health`` with dependency checks: 200 only when every one is ok;
the public one says which are ok and nothing more, the signed-in one has the details."""

from __future__ import annotations

import asyncio

import httpx

from center import create_app
from center.api import system
from center.auth import Role
from center.views import HealthCheck
from tests.center.auth import bearer, memory_accounts
from tests.center.test_registry_api import unconnected_service


def check(ok: bool, detail: str) -> HealthCheck:
    async def probe() -> tuple[bool, str]:
        return ok, detail

    return probe


async def _healthz(checks: dict[str, HealthCheck], path: str = "/api/v1/health") -> httpx.Response:
    """``path`` of an app with these checks: the public ``/healthz`` without a credential, the
    detailed one with a viewer's token."""
    async with memory_accounts() as (accounts, tokens):
        app = create_app(
            unconnected_service(),
            auth=accounts,
            health=lambda: {"mqtt_connected": True, "sensors_registered": 3},
            checks=checks,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
            if path == "/healthz":
                return await client.get(path)  # public: no credential
            return await client.get(path, headers=bearer(tokens[Role.VIEWER]))


async def test_the_public_probe_says_which_checks_are_ok_and_nothing_more() -> None:
    checks = {"broker": check(True, "connected"), "tsdb": check(False, "refused: secret.host")}
    public = await _healthz(checks, "/healthz")
    assert (public.status_code, public.json()) == (
        503,
        {"status": "unavailable", "checks": {"broker": {"ok": True}, "tsdb": {"ok": False}}},
    )
    assert "secret.host" not in public.text
    assert (await _healthz({}, "/healthz")).json() == {"status": "ok"}  # no counters either


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
