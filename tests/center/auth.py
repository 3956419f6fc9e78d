"""Credentials for tests: a user and an API token for every role, on the store under test.

Tests sign in the way clients do (a bearer token, or ``POST /api/v1/session``); there is no
switch that turns the checks off. Passwords are hashed with argon2id at a test cost
(``FAST_HASHING``); the production parameters are checked in ``test_auth_accounts.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from center import Accounts, AccountStore
from center.auth import PasswordHashing, Role, SignInLimiter
from center.auth.rows import ApiTokenRow, SessionRow, UserRow
from center.db import Base

PASSWORD = "correct horse battery"


def fast_hashing() -> PasswordHashing:
    """argon2id at the lowest cost: the tests hash and verify many passwords."""
    return PasswordHashing(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def accounts_on(engine: AsyncEngine, limiter: SignInLimiter | None = None) -> Accounts:
    return Accounts(AccountStore(engine), hashing=fast_hashing(), limiter=limiter)


async def role_tokens(accounts: Accounts, names: dict[Role, str] | None = None) -> dict[Role, str]:
    """A user per role (named after it, or ``names[role]``) with a token of that role."""
    tokens: dict[Role, str] = {}
    for role in Role:
        name = (names or {}).get(role, role.value)
        await accounts.add_user(name, role, None)
        tokens[role], _ = await accounts.issue_token(name, "tests", role)
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def memory_accounts() -> AsyncIterator[tuple[Accounts, dict[Role, str]]]:
    """Accounts on an in-memory SQLite of their own, for apps whose case store is never
    connected; with a token per role."""
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    tables = [UserRow.__table__, ApiTokenRow.__table__, SessionRow.__table__]
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all, tables=tables)
        accounts = accounts_on(engine)
        yield accounts, await role_tokens(accounts)
    finally:
        await engine.dispose()


@asynccontextmanager
async def signed_in_client(
    build: Callable[[Accounts], FastAPI], role: Role = Role.VIEWER
) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client of the app ``build`` makes with accounts of its own (``memory_accounts``),
    sending a token of ``role``."""
    async with memory_accounts() as (accounts, tokens):
        transport = httpx.ASGITransport(app=build(accounts))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://center", headers=bearer(tokens[role])
        ) as client:
            yield client
