"""What the dashboard promises an urgent-handling center, in headless Chromium against one real
node (``citysense serve`` on a real Mosquitto of its own) for the module, each test in a browser
context of its own and on covers of its own: a new urgent case plays a tone that the "Sound"
button mutes, remembered across a reload; the tab title counts new urgent cases until each is
seen or taken on; a notification while the tab is hidden, which opens the case; the language
button switches the labels and is remembered; the filters narrow the board, the requests and
the live events; the board pages through more cases than a page, to the last one, in the
center's order; the map outlines each district around its sensors, zooms and pans.
Cases are opened by tilting covers (``tests/center/browser.py``); the sound, the notifications
and the tab's visibility are instrumented (``ALARM_PROBES``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest

from citysense.broker import MosquittoBroker
from protocol import SensorInfo, SensorKind
from tests.center.browser import (
    INSTANT_RULES,
    Node,
    dashboard,
    expect,
    move_to,
    open_cases,
    served_node,
    sign_in,
)
from tests.serve_process import api, wait_for

pytestmark = pytest.mark.integration

STATION = "st-410105-902"
JINSHUI, ZHONGYUAN = "410105", "410102"
SOUND = (0, 1)
TITLE = (2, 3)
NOTIFY = 4
SEEDED = (5, 6)  # a case in each district, for the language and the filters
LIVE = (7, 8)  # one more in each, while a filter is on
PAGED = tuple(range(9, 21))  # 9 and 10 critical (tests/data/instant_rules.yaml), all else urgent
PAGE = 4  # cases a page of the center's, in the paging test
TITLE_EN, TITLE_ZH = "citysense · urgent cases", "citysense · 紧急案件"
ALARM = re.compile(r"(^|\s)alarm(\s|$)")


def _cover(n: int) -> SensorInfo:
    """Covers 0-5, 7 and 9-20 in 金水区 (rain-water covers), 6 and 8 in 中原区 (sewer covers)."""
    district, klass, lon, lat, street = (
        (ZHONGYUAN, "0102", 113.62 + 0.002 * n, 34.75, "中原路")
        if n in (SEEDED[1], LIVE[1])
        else (JINSHUI, "0103", 113.68 + 0.001 * (n % 5), 34.78 + 0.001 * (n // 5), "金水路")
    )
    return SensorInfo(
        sensor_id=f"{STATION}.cover-{n:02d}",
        kind=SensorKind.COVER,
        class_code=klass,
        component_id=f"{district}{klass}{n:06d}",
        grid_code=f"{district}00100201",
        lon=lon,
        lat=lat,
        address=f"{street} {n} 号",
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """One node for the module: 21 covers on one station, each test using its own; on a
    broker of its own, so that no other test's retained birth is on its map."""
    data = tmp_path_factory.mktemp("dashboard")
    sensors = [_cover(n) for n in range(21)]
    with (
        MosquittoBroker() as broker,
        served_node(broker, data, STATION, sensors=sensors, rules=INSTANT_RULES) as node,
    ):
        yield node


@pytest.fixture(scope="module")
def seeded(node: Node) -> dict[str, int]:
    """A case in 金水区 left where the system put it, one in 中原区 taken on (handle)."""
    jinshui, zhongyuan = open_cases(node, SEEDED)
    move_to(node, zhongyuan, "handle")
    return {"jinshui": jinshui, "zhongyuan": zhongyuan}


def _row(page: Any, case_id: int, table: str = "cases") -> Any:
    return page.locator(f"#{table} tr[data-case-id='{case_id}']")


def _ids(page: Any, table: str = "cases") -> list[int]:
    return [
        int(i)
        for i in page.eval_on_selector_all(f"#{table} tr", "rs => rs.map(r => r.dataset.caseId)")
    ]


def test_a_new_urgent_case_sounds_a_tone_unless_muted_and_muting_is_remembered(
    node: Node, chromium: Any
) -> None:
    with dashboard(chromium, probes=True) as (page, watch):
        sign_in(page, node, watch)  # signing in is the gesture that lets the page play sound
        mute = page.locator("#mute")
        expect(mute).to_have_text("Sound on")
        expect(mute).to_have_attribute("aria-pressed", "false")

        [loud] = open_cases(node, [SOUND[0]])
        expect(_row(page, loud)).to_have_class(ALARM)
        page.wait_for_function("() => window.__tones.length >= 3")
        assert page.evaluate("window.__tones") == [880, 660, 880]  # one tone of three notes

        mute.click()
        expect(mute).to_have_text("Sound off")
        expect(mute).to_have_attribute("aria-pressed", "true")
        page.reload()
        page.wait_for_selector("#conn.live")
        expect(mute).to_have_text("Sound off")  # remembered
        expect(mute).to_have_attribute("aria-pressed", "true")
        page.click("h1")  # a gesture again: the page could play sound
        page.wait_for_function("() => window.__audioContexts === 1")

        [quiet] = open_cases(node, [SOUND[1]])
        expect(_row(page, quiet)).to_have_class(ALARM)  # new and urgent as before
        expect(page).to_have_title(f"(1) {TITLE_EN}")
        assert page.evaluate("window.__tones") == []  # but silent

        mute.click()
        expect(mute).to_have_text("Sound on")
        assert page.evaluate("localStorage.getItem('citysense.muted')") == "0"
        assert watch.problems == []


def test_the_tab_title_counts_new_urgent_cases_until_each_is_seen_or_taken_on(
    node: Node, chromium: Any
) -> None:
    with dashboard(chromium, probes=True, permissions=["notifications"]) as (page, watch):
        sign_in(page, node, watch)
        expect(page).to_have_title(TITLE_EN)

        first, second = open_cases(node, TITLE)
        expect(page).to_have_title(f"(2) {TITLE_EN}")
        expect(_row(page, first)).to_have_class(ALARM)
        expect(_row(page, second)).to_have_class(ALARM)

        _row(page, first).click()  # the operator opens it: seen
        expect(page.locator("#case-title")).to_contain_text(f"#{first} ")
        expect(page).to_have_title(f"(1) {TITLE_EN}")
        page.click("#case-close")
        expect(_row(page, first)).not_to_have_class(ALARM)
        expect(_row(page, second)).to_have_class(ALARM)

        move_to(node, second, "handle")  # someone else takes it on: the stream says so
        expect(_row(page, second).locator(".step")).to_have_text("handling")
        expect(page).to_have_title(TITLE_EN)
        expect(_row(page, second)).not_to_have_class(ALARM)
        assert page.evaluate("window.__notes.length") == 0  # the tab was in front: no notification
        assert watch.problems == []


def test_a_new_urgent_case_notifies_while_the_tab_is_hidden_and_the_notification_opens_it(
    node: Node, chromium: Any
) -> None:
    with dashboard(chromium, probes=True) as (page, watch):
        sign_in(page, node, watch)
        notify = page.locator("#notify")
        expect(notify).to_have_text("Notify me")  # not allowed yet: the button asks
        page.context.grant_permissions(["notifications"])
        notify.click()
        expect(notify).to_have_text("Notifications on")

        page.evaluate("window.__hide(true)")
        [case_id] = open_cases(node, [NOTIFY])
        page.wait_for_function("() => window.__notes.length > 0")
        notes = page.evaluate("window.__notes.map(n => [n.title, n.body, n.tag])")
        address = _cover(NOTIFY).address
        assert notes == [
            [f"New urgent case #{case_id}", f"0103 雨水井盖 · {address}", f"case-{case_id}"]
        ]
        expect(page).to_have_title(f"(1) {TITLE_EN}")

        page.evaluate("window.__hide(false)")
        page.evaluate("window.__notes[0].dispatchEvent(new Event('click'))")  # the user clicks it
        expect(page.locator("#case-view")).to_be_visible()
        expect(page.locator("#case-title")).to_contain_text(f"#{case_id} ")
        expect(page).to_have_title(TITLE_EN)
        assert page.evaluate("window.__notes.length") == 1
        assert watch.problems == []


def test_the_language_button_switches_the_labels_and_the_choice_is_remembered(
    node: Node, chromium: Any, seeded: dict[str, int]
) -> None:
    with dashboard(chromium) as (page, watch):
        sign_in(page, node, watch)
        row = _row(page, seeded["jinshui"])
        english = {
            "h1": TITLE_EN,
            "#open-title": "Open cases",
            "#lang": "中文",
            "#mute": "Sound on",
            ".filters label:has(#f-severity) span": "Severity",
            "#legend span >> nth=0": "Severity:",
            "#open-table th >> nth=1": "Severity",
        }
        chinese = {
            "h1": TITLE_ZH,
            "#open-title": "未结案件",
            "#lang": "English",
            "#mute": "声音开",
            ".filters label:has(#f-severity) span": "级别",
            "#legend span >> nth=0": "级别：",
            "#open-table th >> nth=1": "级别",
        }

        def shows(words: dict[str, str], severity: str, title: str, lang: str) -> None:
            for selector, text in words.items():
                expect(page.locator(selector)).to_contain_text(text)
            expect(row.locator(".sev")).to_have_text(severity)
            expect(page.locator("#f-severity option[value=urgent]")).to_have_text(severity)
            expect(page).to_have_title(title)
            assert page.evaluate("document.documentElement.lang") == lang

        shows(english, "urgent", TITLE_EN, "en")
        assert row.locator(".age").inner_text().startswith("open for ")
        page.click("#lang")
        shows(chinese, "紧急", TITLE_ZH, "zh-CN")
        expect(row.locator(".age")).to_contain_text("已持续")
        page.reload()
        page.wait_for_selector("#conn.live")
        shows(chinese, "紧急", TITLE_ZH, "zh-CN")  # remembered

        page.click("#lang")
        shows(english, "urgent", TITLE_EN, "en")
        page.reload()
        page.wait_for_selector("#conn.live")
        shows(english, "urgent", TITLE_EN, "en")
        assert watch.problems == []


def test_the_filters_narrow_the_board_the_requests_and_the_live_events(
    node: Node, chromium: Any, seeded: dict[str, int]
) -> None:
    jinshui, zhongyuan = seeded["jinshui"], seeded["zhongyuan"]
    with dashboard(chromium) as (page, watch):
        asked: list[dict[str, list[str]]] = []
        page.on(
            "request",
            lambda r: (
                asked.append(parse_qs(urlsplit(r.url).query))
                if urlsplit(r.url).path == "/api/v1/cases"
                else None
            ),
        )
        sign_in(page, node, watch)
        expect(_row(page, jinshui)).to_be_visible()
        expect(_row(page, zhongyuan)).to_be_visible()

        def narrowed(to: int, gone: int, param: str, value: str) -> None:
            expect(_row(page, to)).to_be_visible()
            expect(_row(page, gone)).to_have_count(0)
            open_asked = [q for q in asked if q.get("open_only") == ["true"]]
            assert open_asked[-1].get(param) == [value], open_asked[-1]

        page.select_option("#f-district", ZHONGYUAN)
        narrowed(zhongyuan, jinshui, "district", ZHONGYUAN)
        assert all(
            f"{ZHONGYUAN} 中原区" in text for text in page.locator("#cases tr").all_inner_texts()
        )
        page.select_option("#f-district", "")
        expect(_row(page, jinshui)).to_be_visible()

        page.fill("#f-class", "0102")
        narrowed(zhongyuan, jinshui, "class_code", "0102")
        page.fill("#f-class", "")
        page.select_option("#f-step", "handle")
        narrowed(zhongyuan, jinshui, "step", "handle")
        assert all("handling" in text for text in page.locator("#cases tr").all_inner_texts())
        page.select_option("#f-step", "")
        page.fill("#f-q", f"cover-{SEEDED[0]:02d}")
        narrowed(jinshui, zhongyuan, "q", f"cover-{SEEDED[0]:02d}")
        assert _ids(page) == [jinshui]
        page.fill("#f-q", "")
        page.select_option("#f-severity", "warning")
        expect(page.locator("#empty")).to_be_visible()  # no case here is a warning
        assert _ids(page) == []
        assert asked[-1].get("severity") == ["warning"]
        page.select_option("#f-severity", "")
        expect(_row(page, jinshui)).to_be_visible()

        # live events are matched in the page: a case in another district does not show up
        page.select_option("#f-district", ZHONGYUAN)
        expect(_row(page, jinshui)).to_have_count(0)
        elsewhere, here = open_cases(node, LIVE)
        expect(_row(page, here)).to_be_visible()
        expect(page).to_have_title(f"(2) {TITLE_EN}")  # both arrived: each is new and urgent
        assert _row(page, elsewhere).count() == 0
        page.select_option("#f-district", "")
        expect(_row(page, elsewhere)).to_be_visible()
        assert watch.problems == []


def _history(response: Any) -> bool:
    return bool(response.url.endswith("/history"))


def _query(page: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def test_the_filters_and_the_case_on_view_are_in_the_address_for_a_reload_or_a_link(
    node: Node, chromium: Any, seeded: dict[str, int]
) -> None:
    jinshui, zhongyuan = seeded["jinshui"], seeded["zhongyuan"]
    with dashboard(chromium) as (page, watch):
        # a link with a district and a case, opened before signing in: both after it
        link = "/?" + urlencode({"district": ZHONGYUAN, "case": zhongyuan})
        sign_in(page, node, watch, link)
        expect(page.locator("#case-view")).to_be_visible()
        expect(page.locator("#case-title")).to_contain_text(f"#{zhongyuan} ")
        expect(page.locator("#f-district")).to_have_value(ZHONGYUAN)
        expect(_row(page, zhongyuan)).to_be_visible()
        expect(_row(page, jinshui)).to_have_count(0)
        assert _query(page) == {"district": ZHONGYUAN, "case": str(zhongyuan)}

        page.click("#case-close")
        expect(page.locator("#case-view")).to_be_hidden()
        assert _query(page) == {"district": ZHONGYUAN}
        page.select_option("#f-step", "handle")
        page.fill("#f-q", "cover")
        expect(page).to_have_url(re.compile(r"q=cover"))
        assert _query(page) == {"step": "handle", "district": ZHONGYUAN, "q": "cover"}
        with page.expect_response(_history):  # loaded before the reload: nothing aborted
            _row(page, zhongyuan).click()
        expect(page).to_have_url(re.compile(rf"case={zhongyuan}"))

        # a reload keeps the view (the session cookie keeps the sign-in)
        with page.expect_response(_history):
            page.reload()
        page.wait_for_selector("#conn.live")
        expect(page.locator("#case-title")).to_contain_text(f"#{zhongyuan} ")
        for field, value in (("#f-step", "handle"), ("#f-district", ZHONGYUAN), ("#f-q", "cover")):
            expect(page.locator(field)).to_have_value(value)
        expect(_row(page, zhongyuan)).to_be_visible()
        expect(_row(page, jinshui)).to_have_count(0)

        # a district the map does not have is dropped (and the board shows every district)
        page.goto(node.url + "/?district=999999")
        page.wait_for_selector("#conn.live")
        expect(_row(page, jinshui)).to_be_visible()
        expect(page.locator("#f-district")).to_have_value("")
        expect(page).to_have_url(re.compile(r"/$"))

        # a case that is not there says so, in the view, and the board goes on
        watch.missing_cases = True
        page.goto(node.url + "/?case=987654321")
        expect(page.locator("#case-title")).to_have_text(
            "Case #987654321 was not found: purged, or a wrong link."
        )
        expect(page.locator("#conn.live")).to_be_visible()
        expect(_row(page, jinshui)).to_be_visible()
        assert watch.problems == []


def _shorter_pages(route: Any) -> None:
    """The center's pages made ``PAGE`` cases long (the dashboard asks for 100 open cases and
    20 closed ones a page)."""
    parts = urlsplit(route.request.url)
    query = [(k, str(min(int(v), PAGE)) if k == "limit" else v) for k, v in parse_qsl(parts.query)]
    route.continue_(url=parts._replace(query=urlencode(query)).geturl())


def test_the_board_pages_through_more_cases_than_a_page_to_the_last_one(
    node: Node, chromium: Any
) -> None:
    paged = open_cases(node, PAGED)  # the critical ones first in the board, the last to arrive
    for case_id in paged[-PAGE - 1 :]:
        move_to(node, case_id, "close")
    center_open = api(node.env, "/api/v1/cases?open_only=true&sort=-severity&limit=500")
    center_closed = api(
        node.env, "/api/v1/cases?step=close&step=evaluate&sort=-updated_at&limit=500"
    )
    assert center_open["total"] == len(center_open["items"]) > PAGE
    assert center_closed["total"] == len(center_closed["items"]) > PAGE
    assert center_open["items"][0]["severity"] == "critical"
    with dashboard(chromium) as (page, watch):
        page.route(lambda url: urlsplit(url).path == "/api/v1/cases", _shorter_pages)
        sign_in(page, node, watch)
        expect(page.locator("#cases tr")).to_have_count(PAGE)
        expect(page.locator("#open-total")).to_have_text(str(center_open["total"]))
        _alarming_as_the_center_counts(page, node)  # not only those shown
        for table, kind, center in (
            ("cases", "open", center_open),
            ("closed", "closed", center_closed),
        ):
            order = [c["id"] for c in center["items"]]
            more = page.locator(f"#{kind}-more")
            expect(more).to_contain_text(f"{PAGE} of {center['total']} shown")
            shown = PAGE
            while True:
                expect(page.locator(f"#{table} tr")).to_have_count(shown)
                assert _ids(page, table) == order[:shown]  # page by page, in the center's order
                if shown == len(order):
                    break
                page.click(f"#{kind}-more-button")
                shown = min(shown + PAGE, len(order))
            expect(more).to_be_hidden()
        expect(page.locator("#open-total")).to_have_text(str(center_open["total"]))
        _alarming_as_the_center_counts(page, node)
        assert watch.problems == []


def _alarming_as_the_center_counts(page: Any, node: Node) -> None:
    """The header's count of open cases whose sensor alarms is the center's (the sensors of
    cases opened before may be clearing meanwhile: read both until they agree)."""
    wait_for(
        lambda: (
            page.inner_text("#open-count")
            == str(api(node.env, "/api/v1/cases?open_only=true&status=open&limit=1")["total"])
        ),
        10,
        "the alarming count",
    )


OUTLINED = """(measured) => {
  const outline = (code) => document.querySelector(`#map .district[data-code="${code}"] path`);
  const inside = (code, x, y) => outline(code).isPointInFill(new DOMPoint(x, y));
  const codes = [...document.querySelectorAll("#map .district")].map((g) => g.dataset.code);
  const astray = [...document.querySelectorAll("#map circle.sensor")]
    .map((s) => [s.dataset.district, +s.getAttribute("cx"), +s.getAttribute("cy")])
    .filter(([code, x, y]) => codes.some((other) => inside(other, x, y) !== (other === code)));
  const box = outline(measured).getBBox();
  return {codes, astray, width: box.width, left: box.x,
          sensors: document.querySelectorAll("#map circle.sensor").length};
}"""
"""The districts drawn, the sensors not in their own district's outline or in another's, and
the size and place of the ``measured`` district's outline."""


def test_the_map_outlines_each_district_around_its_sensors_and_zooms_in_and_out(
    node: Node, chromium: Any, seeded: dict[str, int]
) -> None:
    with dashboard(chromium) as (page, watch):
        sign_in(page, node, watch)
        expect(page.locator("#map .district path")).to_have_count(2)
        mark = page.locator(f"#map .case-mark[data-case-id='{seeded['jinshui']}']")
        expect(mark).to_be_visible()

        def drawn() -> dict[str, Any]:
            shape: dict[str, Any] = page.evaluate(OUTLINED, JINSHUI)
            assert shape["codes"] == [ZHONGYUAN, JINSHUI]
            assert shape["sensors"] == 21
            assert shape["astray"] == []  # each sensor in its district's outline, no other's
            return shape

        whole = drawn()
        assert page.locator("#zoom-out").is_disabled()
        page.click("#zoom-in")
        twice = drawn()
        assert twice["width"] == pytest.approx(2 * whole["width"], rel=0.01)
        page.click("#zoom-in")
        assert drawn()["width"] == pytest.approx(4 * whole["width"], rel=0.01)
        page.click("#zoom-out")
        assert drawn()["width"] == pytest.approx(2 * whole["width"], rel=0.01)

        box = page.locator("#map").bounding_box()
        units = 600 / box["width"]  # the map's units a screen pixel
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 40, box["y"] + box["height"] / 2, steps=4)
        page.mouse.up()
        assert drawn()["left"] == pytest.approx(twice["left"] - 40 * units, abs=1)
        expect(page.locator("#case-view")).to_be_hidden()  # a drag opens nothing

        page.click("#zoom-reset")
        assert drawn()["width"] == pytest.approx(whole["width"], rel=0.01)
        assert page.locator("#zoom-out").is_disabled()
        mark.click()  # the case's mark still opens it
        expect(page.locator("#case-title")).to_contain_text(f"#{seeded['jinshui']} ")
        assert watch.problems == []
