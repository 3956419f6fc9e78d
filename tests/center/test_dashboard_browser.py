"""The dashboard in headless Chromium against a real node (``citysense serve`` on a real
Mosquitto): an operator signs in through the form, a cover is opened on a station, and the case
appears on the board and on the map without a reload (highlighted, counted in the tab title);
the operator takes it on and reports it done through the case view's buttons, a refused move
shows its reason inline, the history names the operator; no console or page error; at 390 px
no horizontal overflow; the stale banner once the node is gone. Without Chromium or playwright
the test fails when ``CI`` is set and skips otherwise.

``CITYSENSE_SCREENSHOTS=/some/dir`` saves board-1440.png, case-1440.png and board-390.png there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from citysense.broker import MosquittoBroker
from tests.serve_process import NumberedEdge, api, serve, serve_env, wait_for
from tests.test_backtest_report import CHROMIUM, _browser_or_fail

pytestmark = pytest.mark.integration

OPERATOR = "wang.gong"
OPERATOR_PASSWORD = "lantern river 42"
STATION = "st-410105-901"
CLI = (sys.executable, "-m", "citysense.cli")


@dataclass
class Node:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    edge: NumberedEdge


@pytest.fixture
def node(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Node]:
    """A node with an operator (made with ``citysense users add``) and one station's birth."""
    env = serve_env(mosquitto, tmp_path)
    added = subprocess.run(
        [*CLI, "users", "add", OPERATOR, "--role", "operator", "--password-stdin"],
        input=OPERATOR_PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    with serve(env) as process:
        edge = NumberedEdge(mosquitto, STATION, covers=3, realtime=True)
        try:
            wait_for(
                lambda: any(
                    s["station_id"] == STATION for s in api(env, "/api/v1/stations")["items"]
                ),
                30,
                "the station's birth reached the registry",
            )
            yield Node(f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}", env, process, edge)
        finally:
            edge.close()


def _expected(message: Any, signed_in: bool) -> bool:
    """The browser logs every 4xx answer as an error; two are the test's own doing."""
    text, url = message.text, message.location.get("url", "")
    if not text.startswith("Failed to load resource"):
        return False
    return (not signed_in and "401" in text and url.endswith("/api/v1/session")) or (
        "409" in text and url.endswith("/transitions")
    )


def _settled_history(page: Any, within_s: float = 5.0) -> list[list[str]]:
    """The case view's history rows as cells, once every row is a whole history row: the
    view re-renders the table when the stream says the case changed, and a read in between
    sees its placeholder row."""
    deadline = time.monotonic() + within_s
    while True:
        rows = [
            [cell.strip() for cell in row_text.split("\t")]
            for row_text in page.locator("#history-rows tr").all_inner_texts()
        ]
        if len(rows) >= 5 and all(len(row) >= 5 for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"history rows not settled: {rows}")
        time.sleep(0.05)


def test_an_operator_sees_a_case_arrive_live_and_moves_it_through_the_case_view(
    node: Node,
) -> None:
    sync_playwright = _browser_or_fail()
    shots = os.environ.get("CITYSENSE_SCREENSHOTS")
    problems: list[str] = []
    signed_in = [False]
    loads: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900}, locale="en-GB")

            def on_console(message: Any) -> None:
                if message.type == "error" and not _expected(message, signed_in[0]):
                    problems.append(f"console: {message.text} {message.location}")

            page.on("console", on_console)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("load", lambda p: loads.append(p.url))
            page.goto(node.url + "/")

            page.fill("#username", OPERATOR)
            page.fill("#password", OPERATOR_PASSWORD)
            page.click("#signin button")
            page.wait_for_selector("#conn.live")
            signed_in[0] = True
            assert page.inner_text("#who-name") == f"{OPERATOR} · operator"
            page.wait_for_selector("#map .district text:has-text('金水区 410105')")
            assert page.locator("#cases tr").count() == 0

            for _ in range(30):  # the cover stands open for 6 s of device time: the rule holds 3 s
                node.edge.publish(tilt=75.0)
                time.sleep(0.2)
            node.edge.flush()
            row = page.locator("#cases tr").first
            row.wait_for(timeout=15_000)
            case_id = row.get_attribute("data-case-id")
            assert row.get_attribute("class") is not None
            assert "alarm" in (row.get_attribute("class") or "").split()  # new and urgent
            assert row.locator(".sev.urgent").inner_text() == "urgent"
            assert "dispatched" in row.inner_text()  # the system registered and dispatched it
            assert row.locator(".age").inner_text().startswith("open for ")
            assert page.title().startswith("(1) ")
            mark = page.locator(f"#map .case-mark.urgent[data-case-id='{case_id}']")
            mark.wait_for()
            assert "blink" in (mark.get_attribute("class") or "")
            assert loads == [node.url + "/"]  # all of it live: no reload
            if shots:
                page.screenshot(path=f"{shots}/board-1440.png", full_page=True)

            mark.click()  # the map's mark opens the case view
            view = page.locator("#case-view")
            view.wait_for()
            page.wait_for_selector("#case-details dd:has-text('4101050103000123')")
            assert page.locator("#evidence polyline").count() == 1
            assert page.locator("#evidence line.threshold").count() == 1
            page.wait_for_selector("#history-rows tr >> nth=2")  # discover, register, dispatch
            assert page.locator("#action-buttons button").all_inner_texts() == ["Handle"]

            page.fill("#transition-note", "crew on site")
            page.click("#action-buttons [data-action=handle]")
            page.wait_for_selector("#action-buttons [data-action=verify]")
            page.click("#action-buttons [data-action=redispatch]")  # needs a note: refused
            page.wait_for_selector("#transition-error:has-text('redispatch needs a note')")
            page.click("#action-buttons [data-action=verify]")
            page.wait_for_selector("#action-buttons [data-action=close]")
            page.wait_for_selector("#history-rows tr >> nth=4")
            history = _settled_history(page)
            assert [(h[1], h[2]) for h in history[3:]] == [
                (OPERATOR, "Handle"),
                (OPERATOR, "Report done (verify)"),
            ]
            assert history[3][4] == "crew on site"
            assert page.locator("#transition-error").inner_text() == ""
            if shots:
                page.screenshot(path=f"{shots}/case-1440.png")
            page.click("#case-close")
            board_row = page.locator(f"#cases tr[data-case-id='{case_id}']")
            board_row.locator(".step:has-text('verifying')").wait_for()  # from the stream
            assert page.title() == "citysense · urgent cases"  # seen

            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(200)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert board_row.is_visible()
            assert page.locator("#board").is_visible()
            if shots:
                page.screenshot(path=f"{shots}/board-390.png", full_page=True)
            assert problems == []
            assert loads == [node.url + "/"]

            node.process.send_signal(signal.SIGINT)  # the node goes away: say so
            node.process.wait(30)
            page.wait_for_selector("#stale", state="visible", timeout=15_000)
            assert "may be stale" in page.inner_text("#stale")
        finally:
            browser.close()
