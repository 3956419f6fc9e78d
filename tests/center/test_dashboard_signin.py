"""The dashboard in headless Chromium: a sign-in form and nothing fetched until someone signs
in; then the cases and the live stream on the session cookie (HttpOnly, SameSite=Strict);
sign-out brings the form back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from center import CaseBroadcaster, CaseService, CaseStore, CenterServer, create_app, migrate
from center.auth import Role
from citysense.broker import free_port
from tests.center.auth import PASSWORD, accounts_on
from tests.center.conftest import _run_aside
from tests.center.factories import DETECTED, alert, sensor_info
from tests.test_backtest_report import CHROMIUM, _browser_or_fail

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A center with one case and the viewer ana, served by uvicorn in a thread."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cases.db'}"

    async def prepare() -> None:
        await migrate(url)
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            await accounts_on(engine).add_user("ana", Role.VIEWER, PASSWORD)
            service = CaseService(CaseStore(engine), CaseBroadcaster())
            await service.handle_alert(alert(), sensor_info(), DETECTED)
        finally:
            await engine.dispose()

    _run_aside(prepare())
    engine = create_async_engine(url, poolclass=NullPool)  # no connection outlives the thread
    service = CaseService(CaseStore(engine), CaseBroadcaster())
    port = free_port()
    config = uvicorn.Config(
        create_app(service, auth=accounts_on(engine)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = CenterServer(config, service.broadcaster)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_dashboard_shows_a_sign_in_form_and_fetches_nothing_without_a_session(
    served: str,
) -> None:
    sync_playwright = _browser_or_fail()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = browser.new_context()
            page = context.new_page()
            asked: list[tuple[str, str]] = []
            page.on(
                "request",
                lambda request: asked.append((request.method, request.url[len(served) :])),
            )
            page.goto(served + "/")
            page.wait_for_selector("#signin", state="visible")
            page.wait_for_timeout(500)  # time for anything else the page would ask for
            assert sorted(asked) == [
                ("GET", "/"),
                ("GET", "/api/v1/session"),
                ("GET", "/static/caseview.js"),
                ("GET", "/static/common.js"),
                ("GET", "/static/dashboard.css"),
                ("GET", "/static/dashboard.js"),
                ("GET", "/static/map.js"),
                ("GET", "/static/words.js"),
            ]
            assert page.locator("#board").is_hidden()
            assert page.locator("#cases tr").count() == 0

            page.fill("#username", "ana")
            page.fill("#password", "not the password")
            page.click("#signin button")
            page.wait_for_selector("#signin-error:has-text('Wrong user name or password')")
            assert asked[8:] == [("POST", "/api/v1/session")]

            page.fill("#password", PASSWORD)
            page.click("#signin button")
            page.wait_for_selector("#cases tr")
            assert page.inner_text("#who-name") == "ana · viewer"
            paths = {p.partition("?")[0] for _, p in asked}
            assert {"/api/v1/cases/stream", "/api/v1/cases", "/api/v1/map"} <= paths
            (cookie,) = context.cookies()
            assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
                "citysense_session",
                True,
                "Strict",
            )
            assert page.evaluate("document.cookie") == ""  # no script can read it

            page.click("#signout")
            page.wait_for_selector("#signin", state="visible")
            assert page.locator("#cases tr").count() == 0
            assert context.cookies() == []
            page.reload()
            page.wait_for_selector("#signin", state="visible")
        finally:
            browser.close()
