"""The dashboard's real-browser harness: a node (``citysense serve`` on a real Mosquitto) with
an operator and a live station, cases opened by tilting the station's covers, signing in through
the form, and the console errors a test must not see. The ``chromium`` fixture is in
``tests/center/conftest.py``.

Give ``page.wait_for_function`` a function (``"() => ..."``): a bare expression is evaluated
as a string, which the dashboard's Content-Security-Policy refuses once the wait has to poll."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citysense.broker import MosquittoBroker
from protocol import SensorInfo
from tests.serve_process import (
    QUICK_RULES,
    NumberedEdge,
    api,
    auth_header,
    serve,
    serve_env,
    wait_for_station,
)

INSTANT_RULES = Path(__file__).parents[1] / "data" / "instant_rules.yaml"
"""The cover rule opening after half a second (``QUICK_RULES``: 3 s)."""

OPERATOR = "wang.gong"
OPERATOR_PASSWORD = "lantern river 42"
CLI = (sys.executable, "-m", "citysense.cli")
STEPS = ("discover", "register", "dispatch", "handle", "verify", "close", "evaluate")


@dataclass
class Node:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    edge: NumberedEdge


@contextmanager
def served_node(
    mosquitto: MosquittoBroker,
    data: Path,
    station: str,
    *,
    covers: int = 3,
    sensors: Sequence[SensorInfo] = (),
    rules: Path = QUICK_RULES,
) -> Iterator[Node]:
    """A node with an operator (made with ``citysense users add``) and one live station's
    birth (``covers`` alike covers, or ``sensors``), once the registry has it."""
    env = serve_env(mosquitto, data, CITYSENSE_INGEST_RULES_PATH=str(rules))
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
        edge = NumberedEdge(mosquitto, station, covers, realtime=True, sensors=sensors)
        try:
            wait_for_station(env, station, 30)
            yield Node(f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}", env, process, edge)
        finally:
            edge.close()


def post(env: dict[str, str], path: str, body: dict[str, Any]) -> Any:
    """``POST`` JSON as the test admin (``serve_env``'s token)."""
    url = f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}{path}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={**auth_header(env), "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def open_cases(node: Node, covers: Sequence[int], within: float = 30.0) -> list[int]:
    """Tilt these covers of the node's station until each has an open case that the system
    has taken past discover (the cover rule's hold and a little more); their ids, in order."""
    sensors = [node.edge.sensors[i] for i in covers]
    query = f"/api/v1/cases?station_id={node.edge.station_id}&open_only=true&limit=500"
    deadline = time.monotonic() + within
    while True:
        node.edge.publish(tilt=75.0, tilted=covers)
        node.edge.flush()
        found = {c["sensor_id"]: c for c in api(node.env, query)["items"]}
        if all(found.get(s, {}).get("step", "discover") != "discover" for s in sensors):
            return [found[s]["id"] for s in sensors]
        if time.monotonic() > deadline:
            raise AssertionError(f"no case for each of {sensors} within {within}s")
        time.sleep(0.2)


def move_to(node: Node, case_id: int, step: str) -> dict[str, Any]:
    """Move a case step by step (``{"to": ...}``) to ``step`` as the test admin."""
    case: dict[str, Any] = api(node.env, f"/api/v1/cases/{case_id}")
    for later in STEPS[STEPS.index(case["step"]) + 1 : STEPS.index(step) + 1]:
        case = post(node.env, f"/api/v1/cases/{case_id}/transitions", {"to": later, "note": "test"})
    return case


@dataclass
class PageWatch:
    """What went wrong in a page: console errors, page errors, failed requests. The browser
    logs every 4xx answer as an error; three are a test's own doing: the 401 of the session
    check before signing in, the 409 of a refused move, and the 404 of a case a test asks for
    that is not there (``missing_cases``)."""

    problems: list[str] = field(default_factory=list)
    signed_in: bool = False
    missing_cases: bool = False

    def attach(self, page: Any) -> PageWatch:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._request_failed)
        return self

    def _console(self, message: Any) -> None:
        if message.type == "error" and not self._expected(message):
            self.problems.append(f"console: {message.text} {message.location}")

    def _request_failed(self, request: Any) -> None:
        # the live stream is aborted when its page reloads: not a failure of the page
        stream = request.url.split("?")[0].endswith("/api/v1/cases/stream")
        if not (stream and request.failure == "net::ERR_ABORTED"):
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def _expected(self, message: Any) -> bool:
        text, url = message.text, message.location.get("url", "")
        if not text.startswith("Failed to load resource"):
            return False
        return (
            (not self.signed_in and "401" in text and url.endswith("/api/v1/session"))
            or ("409" in text and url.endswith("/transitions"))
            or (self.missing_cases and "404" in text and "/api/v1/cases/" in url)
        )


ALARM_PROBES = """
(() => {
  window.__tones = [];  // the frequency of every note the page starts
  const startNote = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    window.__tones.push(this.frequency.value);
    return startNote.apply(this, args);
  };
  window.__audioContexts = 0;
  window.AudioContext = class extends window.AudioContext {
    constructor(...args) { super(...args); window.__audioContexts += 1; }
  };
  window.__notes = [];  // every notification shown (the real ones: the context grants them)
  window.Notification = class extends window.Notification {
    constructor(title, options) { super(title, options); window.__notes.push(this); }
  };
  let hidden = false;  // a headless page is never hidden: the test says when it is
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible") });
  window.__hide = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""
"""Instruments a page: the notes it plays (``__tones``), the audio contexts it makes, the
notifications it shows (``__notes``), and ``__hide(true)`` to make the tab hidden."""


@contextmanager
def dashboard(
    chromium: Any, *, probes: bool = False, **options: Any
) -> Iterator[tuple[Any, PageWatch]]:
    """A page in a browser context of its own (no storage; no permission but those in
    ``options``), 1440×900 in English unless ``options`` say otherwise, watched for errors;
    with ``ALARM_PROBES`` when ``probes``."""
    context = chromium.new_context(
        **{"viewport": {"width": 1440, "height": 900}, "locale": "en-GB", **options}
    )
    try:
        if probes:
            context.add_init_script(ALARM_PROBES)
        page = context.new_page()
        yield page, PageWatch().attach(page)
    finally:
        context.close()


def expect(target: Any) -> Any:
    """playwright's ``expect`` (imported when first used: the ``chromium`` fixture says what
    to do when playwright is missing)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def sign_in(page: Any, node: Node, watch: PageWatch, path: str = "/") -> None:
    """Open the dashboard (at ``path``) and sign in as the operator through the form (a user
    gesture: the page may make sounds from now on); return once the live stream is open."""
    page.goto(node.url + path)
    page.fill("#username", OPERATOR)
    page.fill("#password", OPERATOR_PASSWORD)
    page.click("#signin button")
    page.wait_for_selector("#conn.live")
    watch.signed_in = True
