"""Case-store fixtures: every store and API test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``CITYSENSE_TEST_POSTGRES_URL`` (default: postgres@127.0.0.1:5432, trust
auth). The session gets one throw-away database; each test gets a fresh, migrated schema.
An unreachable PostgreSQL fails the tests: it never skips them.

``chromium``: headless Chromium for the dashboard's browser tests (``tests/center/browser.py``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from center import Accounts, CaseBroadcaster, CaseService, CaseStore, create_engine, migrate
from center.auth import Role
from tests.center.auth import accounts_on, role_tokens

POSTGRES_URL_ENV = "CITYSENSE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
T = TypeVar("T")


def _run_aside(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on its own loop in a worker thread, clear of the tests' loops."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: URL, statement: str) -> None:
    try:
        connection = await asyncpg.connect(_dsn(url), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        problem = repr(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(
            f"PostgreSQL is not reachable at {url.render_as_string()}: {problem}. "
            f"Start it, or point {POSTGRES_URL_ENV} at one (user with CREATEDB).",
            pytrace=False,
        )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def throwaway_database() -> Iterator[URL]:
    """A new PostgreSQL database (its asyncpg URL), dropped afterwards."""
    admin = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    name = f"citysense_test_{secrets.token_hex(6)}"
    _run_aside(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(drivername="postgresql+asyncpg", database=name)
    finally:
        _run_aside(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A throw-away database for this test session, dropped at the end."""
    with throwaway_database() as url:
        yield url.render_as_string(hide_password=False)


async def _fresh_schema(database_url: str) -> None:
    connection = await asyncpg.connect(_dsn(make_url(database_url)), timeout=5)
    try:
        await connection.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables) of each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"
    database_url: str = request.getfixturevalue("postgres_database")
    await _fresh_schema(database_url)
    return database_url


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A freshly migrated database of each backend."""
    await migrate(empty_database_url)
    return empty_database_url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Iterator[CaseStore]:
    store = CaseStore(engine)
    yield store
    store.close()


@pytest.fixture
def service(store: CaseStore) -> CaseService:
    return CaseService(store, CaseBroadcaster())


@pytest.fixture
def accounts(engine: AsyncEngine) -> Accounts:
    """Users, tokens and sessions on the database under test (argon2id at a test cost)."""
    return accounts_on(engine)


@pytest.fixture
async def tokens(accounts: Accounts) -> dict[Role, str]:
    """An API token per role; its user is named after the role."""
    return await role_tokens(accounts)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by playwright: one per module, a context per test.
    Missing, it fails the test under ``CI`` and skips it otherwise."""
    from tests.test_backtest_report import CHROMIUM, _browser_or_fail

    sync_playwright = _browser_or_fail()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()
