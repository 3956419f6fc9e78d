"""The dashboard in headless Chromium against a real node (``citysense serve`` on a real
Mosquitto): an operator signs in through the form, a cover is opened on a station, and the case
appears on the board and on the map without a reload (highlighted, counted in the tab title);
the operator acknowledges it and dispatches it to a crew through the case view's buttons, a
refused move shows its reason inline, the history names the operator for both; no console or
page error; at 390 px no horizontal overflow; the stale banner once the node is gone. Without
Chromium or playwright the test fails when ``CI`` is set and skips otherwise (the harness:
``tests/center/browser.py``).

``CITYSENSE_SCREENSHOTS=/some/dir`` saves board-1440.png, case-1440.png and board-390.png there.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citysense.broker import MosquittoBroker
from tests.center.browser import OPERATOR, Node, dashboard, served_node, sign_in

pytestmark = pytest.mark.integration

STATION = "st-410105-901"


@pytest.fixture
def node(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Node]:
    """A node of its own: the test stops it."""
    with served_node(mosquitto, tmp_path, STATION) as node:
        yield node


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
        if len(rows) >= 4 and all(len(row) >= 5 for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"history rows not settled: {rows}")
        time.sleep(0.05)


def test_an_operator_sees_a_case_arrive_live_and_moves_it_through_the_case_view(
    node: Node, chromium: Any
) -> None:
    shots = os.environ.get("CITYSENSE_SCREENSHOTS")
    loads: list[str] = []
    with dashboard(chromium) as (page, watch):
        problems = watch.problems
        page.on("load", lambda p: loads.append(p.url))
        sign_in(page, node, watch)
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
        # the system registers it, for an operator to acknowledge
        row.locator(".step:has-text('registered')").wait_for()
        row.locator(".mark:has-text('not acknowledged')").wait_for()
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
        page.wait_for_selector("#history-rows tr >> nth=1")  # discover, register
        assert page.locator("#action-buttons button").all_inner_texts() == [
            "Dismiss",
            "Acknowledge",
            "Dispatch",
        ]
        acknowledged = page.locator("#case-details dt:has-text('Acknowledged') + dd")
        assert acknowledged.inner_text() == "—"  # nobody yet

        page.click("#action-buttons [data-action=acknowledge]")
        page.wait_for_selector(
            f"#case-details dt:has-text('Acknowledged') + dd:has-text('{OPERATOR}')"
        )
        assert page.locator("#action-buttons [data-action=acknowledge]").count() == 0
        page.click("#action-buttons [data-action=dismiss]")  # needs a note: refused
        page.wait_for_selector("#transition-error:has-text('dismiss needs a note')")
        page.fill("#transition-note", "金水区市政抢修队")
        page.click("#action-buttons [data-action=dispatch]")
        page.wait_for_selector("#action-buttons [data-action=handle]")
        page.wait_for_selector("#history-rows tr >> nth=3")
        history = _settled_history(page)
        assert [(h[1], h[2]) for h in history[2:]] == [
            (OPERATOR, "Acknowledge"),
            (OPERATOR, "Dispatch"),
        ]
        assert history[3][4] == "金水区市政抢修队"
        assert page.locator("#transition-error").inner_text() == ""
        if shots:
            page.screenshot(path=f"{shots}/case-1440.png")
        page.click("#case-close")
        board_row = page.locator(f"#cases tr[data-case-id='{case_id}']")
        board_row.locator(".step:has-text('dispatched')").wait_for()  # from the stream
        assert board_row.locator(".mark:has-text('not acknowledged')").count() == 0
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
