"""Default deny, route by route: the list comes from the app itself, so a route added later is
checked too (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.responses import PlainTextResponse

from center import (
    Accounts,
    AccountStore,
    CaseBroadcaster,
    CaseService,
    CaseStore,
    create_app,
    create_engine,
)
from center.api.dashboard import MODULES
from center.auth import AccessPolicy, Role
from center.auth.policy import PUBLIC, SIGNED_IN, roles_with
from ingest.dead_letters import JsonlDeadLetters
from ingest.registry import StationRegistry
from tests.center.auth import bearer
from tests.center.factories import rules_control

PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/"),
    ("GET", "/static/{module}.js"),
    ("GET", "/static/dashboard.css"),
    ("POST", "/api/v1/session"),
}
"""The only routes open without a credential. Changing this set is a security decision."""
NEVER_ENDING = {"/api/v1/cases/stream": {"last_event_id": "-1"}}
"""Routes whose success never ends (httpx's ASGI transport would wait for it): asked with a query
that fails validation, which runs after the access check."""


def full_app(service: CaseService, accounts: Accounts, tmp_path: Path) -> FastAPI:
    """The app with every optional part, so every route exists."""
    return create_app(
        service,
        auth=accounts,
        health=dict,
        metrics=bytes,
        registry=StationRegistry(),
        rejects=JsonlDeadLetters(tmp_path / "dead_letters.jsonl"),
        rules=rules_control(tmp_path),
    )


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD aside (it is GET's)."""
    found = {
        (method, context.path_format)
        for context in iter_route_contexts(app.routes)
        if context.path_format is not None
        for method in (context.methods or {"GET"})
        if method != "HEAD"
    }
    return sorted(found, key=lambda route: (route[1], route[0]))


def sample(template: str) -> str:
    """A concrete path: ids nobody has (an admin's DELETE of token 1 would revoke one)."""
    return re.sub(r"\{[^}]+\}", "999999", template)


@pytest.fixture
async def client(
    service: CaseService, accounts: Accounts, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=full_app(service, accounts, tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
        yield client


async def test_every_route_has_its_own_entry_in_the_access_table(
    service: CaseService, accounts: Accounts, tmp_path: Path
) -> None:
    policy = AccessPolicy()
    served = routes(full_app(service, accounts, tmp_path))
    assert len(served) >= 29
    missing = [f"{m} {p}" for m, p in served if policy.explicit(m, p) is None]
    assert not missing, f"add these to center/auth/policy.py ROUTES (else admin only): {missing}"
    public = {(m, p) for m, p in served if policy.explicit(m, p) == PUBLIC}
    assert public == PUBLIC_ROUTES


async def test_every_route_refuses_a_request_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    assert isinstance(client._transport, httpx.ASGITransport)
    app = client._transport.app
    assert isinstance(app, FastAPI)
    checked = 0
    for method, template in routes(app):
        if (method, template) in PUBLIC_ROUTES:
            continue
        response = await client.request(method, sample(template))
        assert response.status_code == 401, f"{method} {template}: {response.status_code}"
        assert response.json()["detail"].startswith("not signed in")
        assert response.headers["www-authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 26


async def test_every_route_refuses_a_role_without_its_permission(
    client: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    assert isinstance(client._transport, httpx.ASGITransport)
    app = client._transport.app
    assert isinstance(app, FastAPI)
    policy = AccessPolicy()
    refused = allowed = 0
    for method, template in routes(app):
        access = policy.access(method, sample(template))
        if access == PUBLIC:
            continue
        for role, token in tokens.items():
            response = await client.request(
                method,
                sample(template),
                params=NEVER_ENDING.get(template),
                headers=bearer(token),
            )
            where = f"{method} {template} as {role}: {response.status_code} {response.text[:200]}"
            if role in roles_with(access):
                assert response.status_code not in (401, 403), where
                allowed += 1
            else:
                assert access != SIGNED_IN
                assert response.status_code == 403, where
                assert f"needs the {access} permission" in response.json()["detail"]
                refused += 1
    assert refused >= 29
    assert allowed >= 60


async def test_public_routes_answer_without_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    refused = await client.post(
        "/api/v1/session", json={"username": "nobody", "password": "x" * 12}
    )
    assert refused.status_code == 401
    for module in sorted(MODULES):
        script = await client.get(f"/static/{module}.js")
        assert script.status_code == 200, module
        assert script.headers["content-type"].startswith("text/javascript")
        assert "script-src 'self'" in script.headers["content-security-policy"]
    # the template is public, what it serves is not: other names and files are not found, and
    # a path into another folder is not the template's (so it needs a credential)
    for path in ("/static/other.js", "/static/index.js"):
        assert (await client.get(path)).status_code == 404, path
    for path in ("/static/..%2Fdb.js", "/static/a%2Fb.js"):
        assert (await client.get(path)).status_code == 401, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("HEAD", "/api/v1/cases"),
        ("GET", "/api/v1/nothing-here"),
        ("OPTIONS", "/api/v1/cases"),
        ("GET", "/healthz/../api/v1/cases"),
        ("GET", "/api/v1/cases/"),
        ("POST", "/healthz"),
    ],
)
async def test_other_methods_and_unknown_paths_need_credentials_too(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401


async def test_a_route_the_table_does_not_name_is_for_admins_only(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str], tmp_path: Path
) -> None:
    app = full_app(service, accounts, tmp_path)

    @app.get("/api/v1/added-later")
    async def added_later() -> dict[str, str]:
        return {"ok": "yes"}

    async def plain(request: object) -> PlainTextResponse:
        return PlainTextResponse("a plain Starlette route")

    app.add_route("/plain", plain)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://center"
    ) as client:
        for path in ("/api/v1/added-later", "/plain"):
            assert (await client.get(path)).status_code == 401
            for role, token in tokens.items():
                answer = await client.get(path, headers=bearer(token))
                assert answer.status_code == (200 if role is Role.ADMIN else 403), (path, role)


@pytest.mark.parametrize(
    "header",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer a b", "Token abc"],
)
async def test_a_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/api/v1/cases", headers={"Authorization": header})
    assert response.status_code == 401
    assert "malformed" in response.json()["detail"]


async def test_an_unknown_token_is_401_and_never_falls_back_to_the_cookie(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/cases", headers=bearer("cst_nope"))
    assert (response.status_code, response.json()["detail"]) == (
        401,
        "the token is not valid (unknown or revoked)",
    )


async def test_the_openapi_document_names_the_schemes_and_each_access(
    client: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    document = (await client.get("/openapi.json", headers=bearer(tokens[Role.VIEWER]))).json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "session"}
    assert document["components"]["securitySchemes"]["session"]["name"] == "citysense_session"
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/api/v1/session"]["post"]["security"] == []
    transitions = paths["/api/v1/cases/{case_id}/transitions"]["post"]
    assert transitions["x-citysense-access"] == "transition"
    assert {"401", "403"} <= set(transitions["responses"])
    assert paths["/api/v1/rules"]["put"]["x-citysense-access"] == "rules"
    assert paths["/api/v1/tokens"]["post"]["x-citysense-access"] == "admin"


async def test_a_database_that_cannot_check_a_credential_is_a_json_503() -> None:
    engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    broken = CaseService(CaseStore(engine), CaseBroadcaster())
    app = create_app(broken, auth=Accounts(AccountStore(engine)))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://center"
        ) as client:
            response = await client.get("/api/v1/cases", headers=bearer("cst_anything"))
    finally:
        await engine.dispose()
    assert (response.status_code, response.json()) == (503, {"detail": "case store unavailable"})
