"""Users and API tokens: argon2id hashes, tokens stored hashed and shown once, revocation, role
caps, names, the password policy, the production check, and the admin API (SQLite and
PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from center import Accounts, AccountStore, CaseService, create_app
from center.auth import (
    AccountError,
    AccountExistsError,
    InsecureSetupError,
    Role,
    UnknownAccountError,
    WeakPasswordError,
)
from center.auth.rows import ApiTokenRow, UserRow
from center.errors import StoreError
from tests.center.auth import PASSWORD, bearer, fast_hashing
from tests.center.factories import DETECTED


async def test_passwords_are_stored_as_argon2id_with_the_production_parameters(
    engine: AsyncEngine,
) -> None:
    accounts = Accounts(AccountStore(engine))  # the default hashing, as serve uses it
    await accounts.add_user("ana", Role.OPERATOR, PASSWORD)
    async with engine.connect() as connection:
        stored = (await connection.execute(select(UserRow.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored
    assert await accounts.hashing.verify(stored, PASSWORD)
    assert not await accounts.hashing.verify(stored, PASSWORD.upper())


async def test_a_token_is_shown_once_and_stored_as_its_sha256(
    accounts: Accounts, engine: AsyncEngine
) -> None:
    await accounts.add_user("ci-bot", Role.VIEWER, None)
    token, record = await accounts.issue_token("ci-bot", "ci", Role.VIEWER)
    assert token.startswith("cst_")
    assert len(token) == 4 + 43  # 32 random bytes, base64url
    async with engine.connect() as connection:
        digest = (await connection.execute(select(ApiTokenRow.digest))).scalar_one()
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert (record.user, record.name, record.role, record.revoked_at) == (
        "ci-bot",
        "ci",
        Role.VIEWER,
        None,
    )
    principal = await accounts.authenticate(token=token)
    assert principal is not None
    assert (principal.name, principal.role, principal.via, principal.credential_id) == (
        "ci-bot",
        Role.VIEWER,
        "token",
        record.id,
    )


async def test_a_revoked_token_stops_at_once(accounts: Accounts) -> None:
    await accounts.add_user("ci-bot", Role.ENGINEER, None)
    token, record = await accounts.issue_token("ci-bot", "ci", Role.ENGINEER)
    revoked = await accounts.revoke_token(record.id)
    assert revoked.revoked_at is not None
    assert await accounts.authenticate(token=token) is None
    again = await accounts.revoke_token(record.id)
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(UnknownAccountError, match="no token 999"):
        await accounts.revoke_token(999)


async def test_last_use_is_written_at_most_once_a_minute(engine: AsyncEngine) -> None:
    now = [DETECTED]
    accounts = Accounts(AccountStore(engine), hashing=fast_hashing(), clock=lambda: now[0])
    await accounts.add_user("ci-bot", Role.VIEWER, None)
    token, _ = await accounts.issue_token("ci-bot", "ci", Role.VIEWER)
    seen = []
    for seconds in (0, 30, 61, 90):
        now[0] = DETECTED + timedelta(seconds=seconds)
        await accounts.authenticate(token=token)
        (listed,) = await accounts.tokens("ci-bot")
        seen.append(listed.last_used_at)
    assert seen == [
        DETECTED,
        DETECTED,
        DETECTED + timedelta(seconds=61),
        DETECTED + timedelta(seconds=61),
    ]


@pytest.mark.parametrize(
    ("user_role", "token_role", "allowed"),
    [
        (Role.ADMIN, Role.ENGINEER, True),
        (Role.OPERATOR, Role.VIEWER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ENGINEER, False),
        (Role.ENGINEER, Role.OPERATOR, False),
        (Role.VIEWER, Role.ADMIN, False),
    ],
)
async def test_a_token_holds_no_more_than_its_user(
    accounts: Accounts, user_role: Role, token_role: Role, allowed: bool
) -> None:
    await accounts.add_user("ana", user_role, None)
    if allowed:
        await accounts.issue_token("ana", "t", token_role)
    else:
        with pytest.raises(AccountError, match="would hold more"):
            await accounts.issue_token("ana", "t", token_role)


async def test_a_disabled_users_tokens_stop(accounts: Accounts) -> None:
    await accounts.add_user("ana", Role.OPERATOR, None)
    token, _ = await accounts.issue_token("ana", "t", Role.OPERATOR)
    await accounts.disable("ana")
    assert await accounts.authenticate(token=token) is None
    with pytest.raises(AccountError, match="disabled"):
        await accounts.issue_token("ana", "t2", Role.VIEWER)


async def test_user_names_and_the_password_policy(accounts: Accounts) -> None:
    await accounts.add_user("王工", Role.OPERATOR, PASSWORD)
    with pytest.raises(AccountExistsError):
        await accounts.add_user("王工", Role.VIEWER, None)
    for name in ("system", "SYSTEM", "with space", "a/b", "", "x" * 65):
        with pytest.raises(AccountError):
            await accounts.add_user(name, Role.VIEWER, None)
    for password in ("short", "changeme", "Password", "bob.smith1", "aaaaaaaaaaaa"):
        with pytest.raises(WeakPasswordError):
            await accounts.add_user("bob.smith1", Role.VIEWER, password)
    with pytest.raises(UnknownAccountError):
        await accounts.set_password("nobody", PASSWORD)


async def test_production_needs_an_admin_and_refuses_a_default_password(
    accounts: Accounts,
) -> None:
    with pytest.raises(InsecureSetupError, match="no admin account"):
        await accounts.check_production()
    await accounts.add_user("ops", Role.OPERATOR, PASSWORD)
    with pytest.raises(InsecureSetupError, match="no admin account"):
        await accounts.check_production()
    # an account made before the policy, or written by hand: the policy would refuse it
    weak = accounts.hashing.hash_now("changeme")
    await accounts.store.add_user("root-admin", Role.ADMIN, weak, DETECTED)
    with pytest.raises(InsecureSetupError, match="admin root-admin has a default password"):
        await accounts.check_production()
    await accounts.set_password("root-admin", "a long and fresh one")
    await accounts.check_production()


@pytest.fixture
async def admin_client(
    service: CaseService, accounts: Accounts, tokens: dict[Role, str]
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service, auth=accounts))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://center", headers=bearer(tokens[Role.ADMIN])
    ) as client:
        yield client


async def test_admins_manage_users_and_tokens_over_the_api(
    admin_client: httpx.AsyncClient,
) -> None:
    made = await admin_client.post(
        "/api/v1/users", json={"name": "ana", "role": "engineer", "password": PASSWORD}
    )
    assert made.status_code == 201, made.text
    assert (made.json()["name"], made.json()["has_password"]) == ("ana", True)
    twice = await admin_client.post("/api/v1/users", json={"name": "ana", "role": "viewer"})
    assert twice.status_code == 409
    weak = await admin_client.post(
        "/api/v1/users", json={"name": "bo", "role": "viewer", "password": "admin"}
    )
    assert weak.status_code == 422
    names = [u["name"] for u in (await admin_client.get("/api/v1/users")).json()["items"]]
    assert names == ["admin", "ana", "engineer", "operator", "viewer"]

    issued = await admin_client.post(
        "/api/v1/tokens", json={"user": "ana", "name": "laptop", "role": "viewer"}
    )
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert token.startswith("cst_")
    listed = (await admin_client.get("/api/v1/tokens", params={"user": "ana"})).json()["items"]
    assert [(t["name"], t["role"]) for t in listed] == [("laptop", "viewer")]
    assert "token" not in listed[0]
    me = await admin_client.get("/api/v1/session", headers=bearer(token))
    assert (me.json()["name"], me.json()["via"], me.json()["token_name"]) == (
        "ana",
        "token",
        "laptop",
    )
    too_much = await admin_client.post(
        "/api/v1/tokens", json={"user": "ana", "name": "x", "role": "operator"}
    )
    assert too_much.status_code == 422
    nobody = await admin_client.post(
        "/api/v1/tokens", json={"user": "nobody", "name": "x", "role": "viewer"}
    )
    assert nobody.status_code == 404
    revoked = await admin_client.delete(f"/api/v1/tokens/{issued.json()['id']}")
    assert (revoked.status_code, revoked.json()["revoked_at"] is not None) == (200, True)
    assert (await admin_client.get("/api/v1/session", headers=bearer(token))).status_code == 401
    assert (await admin_client.delete("/api/v1/tokens/999")).status_code == 404


async def test_a_recent_credential_passes_while_the_database_is_down(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [DETECTED]
    accounts = Accounts(AccountStore(engine), hashing=fast_hashing(), clock=lambda: now[0])
    await accounts.add_user("prometheus", Role.VIEWER, None)
    seen, _ = await accounts.issue_token("prometheus", "scrape", Role.VIEWER)
    unseen, _ = await accounts.issue_token("prometheus", "other", Role.VIEWER)
    revoked, record = await accounts.issue_token("prometheus", "old", Role.VIEWER)
    for token in (seen, revoked):
        assert await accounts.authenticate(token=token) is not None
    await accounts.revoke_token(record.id)

    async def down(*args: object) -> None:
        raise StoreError("account store: connection refused")

    monkeypatch.setattr(AccountStore, "token_owner", down)
    now[0] += timedelta(minutes=9)
    principal = await accounts.authenticate(token=seen)
    assert principal is not None
    assert principal.name == "prometheus"
    for token in (unseen, revoked):
        with pytest.raises(StoreError, match="cannot check the credential"):
            await accounts.authenticate(token=token)
    now[0] += timedelta(minutes=2)  # 11 minutes since it was last checked
    with pytest.raises(StoreError):
        await accounts.authenticate(token=seen)
