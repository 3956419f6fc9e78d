"""Browser sign-in: the session cookie, sign-out, wrong passwords, the rate limit, cross-site
requests, and the actor of a transition (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from center import Accounts, AccountStore, CaseService, create_app
from center.auth import Role, SignInLimiter
from tests.center.auth import PASSWORD, bearer, fast_hashing, role_tokens
from tests.center.factories import DETECTED, alert, sensor_info

COOKIE = "citysense_session"


class Clock:
    def __init__(self) -> None:
        self.now = DETECTED
        self.monotonic = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.monotonic += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(engine: AsyncEngine, clock: Clock) -> Accounts:
    limiter = SignInLimiter(per_name=3, per_address=5, window_s=60, clock=lambda: clock.monotonic)
    return Accounts(
        AccountStore(engine),
        hashing=fast_hashing(),
        limiter=limiter,
        session_ttl=timedelta(hours=1),
        clock=lambda: clock.now,
    )


@pytest.fixture
async def client(service: CaseService, accounts: Accounts) -> AsyncIterator[httpx.AsyncClient]:
    for role in Role:
        await accounts.add_user(f"{role.value}-1", role, PASSWORD)
    transport = httpx.ASGITransport(app=create_app(service, auth=accounts))
    async with httpx.AsyncClient(transport=transport, base_url="http://center") as client:
        yield client


async def sign_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/v1/session", json={"username": name, "password": password})


def cookie(response: httpx.Response) -> dict[str, str]:
    value = response.cookies[COOKIE]
    return {"Cookie": f"{COOKIE}={value}"}


def set_cookie(response: httpx.Response) -> list[str]:
    return [part.strip().lower() for part in response.headers["set-cookie"].split(";")]


async def test_sign_in_sets_a_strict_http_only_cookie_and_says_who(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, "viewer-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["role"], body["via"], body["permissions"]) == (
        "viewer-1",
        "viewer",
        "session",
        ["read"],
    )
    assert body["expires_at"] == "2026-07-01T09:01:00Z"
    attributes = set_cookie(response)
    assert {"httponly", "samesite=strict", "path=/", "max-age=3600"} <= set(attributes)
    assert "secure" not in attributes  # plain HTTP, not production
    me = await client.get("/api/v1/session", headers=cookie(response))
    assert (me.status_code, me.json()["name"], me.json()["via"]) == (200, "viewer-1", "session")
    assert (await client.get("/api/v1/cases", headers=cookie(response))).status_code == 200


async def test_the_cookie_is_secure_over_https_and_always_in_production(
    service: CaseService, accounts: Accounts
) -> None:
    await accounts.add_user("ana", Role.VIEWER, PASSWORD)
    for secure_cookies, base_url, secure in (
        (False, "https://center", True),
        (True, "http://center", True),
        (False, "http://center", False),
    ):
        app = create_app(service, auth=accounts, secure_cookies=secure_cookies)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url
        ) as client:
            response = await sign_in(client, "ana")
        assert ("secure" in set_cookie(response)) is secure, (secure_cookies, base_url)


async def test_sign_out_ends_the_session_and_clears_the_cookie(client: httpx.AsyncClient) -> None:
    signed_in = cookie(await sign_in(client, "operator-1"))
    out = await client.delete("/api/v1/session", headers=signed_in)
    assert out.status_code == 204
    assert 'citysense_session=""' in out.headers["set-cookie"]
    assert "max-age=0" in set_cookie(out)
    again = await client.get("/api/v1/session", headers=signed_in)
    assert (again.status_code, again.json()["detail"]) == (
        401,
        "the session has ended: sign in again",
    )


async def test_a_session_ends_when_it_expires(client: httpx.AsyncClient, clock: Clock) -> None:
    signed_in = cookie(await sign_in(client, "viewer-1"))
    clock.advance(3599)
    assert (await client.get("/api/v1/session", headers=signed_in)).status_code == 200
    clock.advance(1)
    assert (await client.get("/api/v1/session", headers=signed_in)).status_code == 401


async def test_wrong_password_unknown_user_and_no_password_get_one_answer(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    await accounts.add_user("ci-bot", Role.VIEWER, None)
    answers = [
        await sign_in(client, "viewer-1", "wrong password!"),
        await sign_in(client, "nobody-at-all", PASSWORD),
        await sign_in(client, "ci-bot", PASSWORD),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [
        (401, {"detail": "wrong user name or password"})
    ] * 3
    assert all(COOKIE not in a.cookies for a in answers)


async def test_a_disabled_user_can_no_longer_sign_in_and_loses_its_sessions(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    signed_in = cookie(await sign_in(client, "operator-1"))
    await accounts.disable("operator-1")
    assert (await client.get("/api/v1/session", headers=signed_in)).status_code == 401
    assert (await sign_in(client, "operator-1")).status_code == 401


async def test_a_new_password_ends_the_sessions(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    signed_in = cookie(await sign_in(client, "viewer-1"))
    await accounts.set_password("viewer-1", "another good password")
    assert (await client.get("/api/v1/session", headers=signed_in)).status_code == 401
    assert (await sign_in(client, "viewer-1")).status_code == 401
    assert (await sign_in(client, "viewer-1", "another good password")).status_code == 200


async def test_failed_sign_ins_are_limited_per_name(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    for _ in range(3):
        assert (await sign_in(client, "admin-1", "guess guess guess")).status_code == 401
    limited = await sign_in(client, "admin-1")  # the right password: not even checked
    assert limited.status_code == 429
    assert limited.json()["detail"] == "too many failed sign-ins: try again in 60 s"
    assert limited.headers["retry-after"] == "60"
    assert (await sign_in(client, "viewer-1")).status_code == 200  # other names are not
    clock.advance(60)
    assert (await sign_in(client, "admin-1")).status_code == 200


async def test_failed_sign_ins_are_limited_per_address_across_names(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    for n in range(5):
        assert (await sign_in(client, f"guess-{n}", "guess guess guess")).status_code == 401
    assert (await sign_in(client, "viewer-1")).status_code == 429
    clock.advance(60)
    assert (await sign_in(client, "viewer-1")).status_code == 200


async def test_a_success_clears_the_names_failures(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        await sign_in(client, "viewer-1", "typo typo typo")
    assert (await sign_in(client, "viewer-1")).status_code == 200
    for _ in range(2):
        await sign_in(client, "viewer-1", "typo typo typo")
    assert (await sign_in(client, "viewer-1")).status_code == 200


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),  # a sibling subdomain
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({"Origin": "https://evil.example"}, True),
        ({"Origin": "null"}, True),
        ({"Origin": "http://center"}, False),
        ({}, False),  # not a browser
    ],
)
async def test_a_cross_site_request_riding_on_the_cookie_is_refused(
    client: httpx.AsyncClient, service: CaseService, headers: dict[str, str], refused: bool
) -> None:
    signed_in = cookie(await sign_in(client, "operator-1"))
    await service.handle_alert(alert(severity="maintenance"), sensor_info(), DETECTED)
    case_id = (await client.get("/api/v1/cases", headers=signed_in)).json()["items"][0]["id"]
    moved = await client.post(
        f"/api/v1/cases/{case_id}/transitions",
        json={"action": "register"},
        headers={**signed_in, **headers},
    )
    assert moved.status_code == (403 if refused else 200), moved.text
    if refused:
        assert moved.json() == {"detail": "cross-site request refused"}
    reading = await client.get("/api/v1/cases", headers={**signed_in, **headers})
    assert reading.status_code == 200  # a read changes nothing: a link may lead here
    sign_in_from_elsewhere = await client.post(
        "/api/v1/session",
        json={"username": "viewer-1", "password": PASSWORD},
        headers=headers,
    )
    assert sign_in_from_elsewhere.status_code == (403 if refused else 200)


async def test_a_bearer_token_is_not_subject_to_the_cross_site_check(
    client: httpx.AsyncClient, accounts: Accounts
) -> None:
    tokens = await role_tokens(accounts)
    response = await client.put(
        "/api/v1/rules/shadow",
        json={"yaml": "rules: []", "author": "x"},
        headers={**bearer(tokens[Role.ENGINEER]), "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 503  # past the checks: this app has no rules control


async def _case(service: CaseService) -> int:
    await service.handle_alert(alert(severity="maintenance"), sensor_info(), DETECTED)
    items, _ = await service.store.list_cases()
    return items[0].id


async def _history(client: httpx.AsyncClient, case_id: int, headers: dict[str, str]) -> Any:
    return (await client.get(f"/api/v1/cases/{case_id}/history", headers=headers)).json()["items"]


@pytest.mark.parametrize("how", ["session", "token"])
async def test_the_actor_of_a_transition_is_the_signed_in_user(
    client: httpx.AsyncClient, service: CaseService, accounts: Accounts, how: str
) -> None:
    await accounts.add_user("王工", Role.OPERATOR, PASSWORD)
    if how == "session":
        headers = cookie(await sign_in(client, "王工"))
    else:
        token, _ = await accounts.issue_token("王工", "tablet", Role.OPERATOR)
        headers = bearer(token)
    case_id = await _case(service)
    moves: list[Callable[[], dict[str, str]]] = [
        lambda: {"action": "register"},
        lambda: {"action": "dispatch", "actor": "王工"},
    ]
    for move in moves:
        answer = await client.post(
            f"/api/v1/cases/{case_id}/transitions", json=move(), headers=headers
        )
        assert answer.status_code == 200, answer.text
    posing = await client.post(
        f"/api/v1/cases/{case_id}/transitions",
        json={"action": "handle", "actor": "李工"},
        headers=headers,
    )
    assert (posing.status_code, posing.json()) == (
        403,
        {"detail": "signed in as 王工: cannot act as 李工 (leave actor out)"},
    )
    history = await _history(client, case_id, headers)
    assert [(h["actor"], h["action"]) for h in history] == [
        ("system", "discover"),
        ("王工", "register"),
        ("王工", "dispatch"),
    ]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_writes_take_json_only_which_no_cross_site_form_can_send(
    client: httpx.AsyncClient, service: CaseService, content_type: str
) -> None:
    signed_in = cookie(await sign_in(client, "operator-1"))
    case_id = await _case(service)
    moved = await client.post(
        f"/api/v1/cases/{case_id}/transitions",
        content=b'{"action": "register"}',
        headers={**signed_in, "Content-Type": content_type},
    )
    assert moved.status_code == 422
    signing_in = await client.post(
        "/api/v1/session",
        content=f'{{"username": "viewer-1", "password": "{PASSWORD}"}}'.encode(),
        headers={"Content-Type": content_type},
    )
    assert signing_in.status_code == 422
