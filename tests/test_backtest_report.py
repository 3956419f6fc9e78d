"""`citysense backtest --report`: the self-contained HTML report.

Unit tests of ``citysense.report`` on small fake data (escaping, no URL, the plot elements, a
missed incident and a false case named, the cap on plots, the signals read from a recording);
then end to end: a simulated scenario backtested with ``--report`` (one rule set, and a sweep),
the file opened in headless Chromium (Debian's ``/usr/bin/chromium`` driven by playwright): no
console or page error, no request but the file itself, every plot drawn with a size, no
horizontal overflow at 390 px. Without Chromium or playwright the browser test fails when ``CI``
is set and skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from citysense.cli import app
from citysense.report import (
    MAX_PLOTS,
    ReportCase,
    ReportVariant,
    Window,
    gather_signals,
    plot_windows,
    render_report,
    write_report,
)
from recording.format import Record, RecordingWriter, ns_from_datetime
from rules import DEFAULT_RULES_FILE, load_rules
from simulator.run import run_scenario
from simulator.scenario import load_scenario
from simulator.score import KindScore, Score, ScoredCase
from simulator.truth import GroundTruth, LabelledIncident

SCENARIOS = Path(__file__).parents[1] / "scenarios"
CHROMIUM = Path("/usr/bin/chromium")
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
RULES = load_rules(DEFAULT_RULES_FILE)
EVIL = '<script>alert("x")</script>&'
URLS = ("http://", "https://", "//cdn", "ftp://")


# --- unit tests on fake data -------------------------------------------------------------------


def _incident(number: int, sensor: str, *, start_min: float = 5) -> LabelledIncident:
    start = T0 + timedelta(minutes=start_min)
    return LabelledIncident(
        id=f"inc-{number:03d}",
        kind="cover_open",
        sensor_id=sensor,
        station_id=sensor.split(".")[0],
        sensors=(sensor,),
        start=start,
        end=start + timedelta(minutes=4),
        expected_category="component",
        expected_class="0103",
        expected_severity="urgent",
    )


def _truth(incidents: tuple[LabelledIncident, ...]) -> GroundTruth:
    return GroundTruth(
        scenario=f"fake {EVIL}",
        seed=7,
        start=T0,
        end=T0 + timedelta(hours=1),
        sensors=4,
        stations=1,
        incidents=incidents,
        faults=(),
    )


def _variant(
    truth: GroundTruth,
    caught: dict[str, float],
    *,
    label: str = "default rules",
    value: float | None = None,
    false_sensor: str | None = None,
) -> ReportVariant:
    """Incidents in ``caught`` (id: delay in s) have a case; the others are missed."""
    cases = []
    for incident in truth.incidents:
        if incident.id in caught:
            opened = incident.start + timedelta(seconds=caught[incident.id])
            cases.append(
                ReportCase(
                    rule_id="cover-open",
                    sensor_id=incident.sensor_id,
                    category="component",
                    class_code="0103",
                    started_at=opened - timedelta(seconds=20),
                    opened_at=opened,
                    cleared_at=incident.end + timedelta(seconds=10),
                    severity="urgent",
                    threshold=20.0,
                )
            )
    unexpected = ()
    if false_sensor is not None:
        when = T0 + timedelta(minutes=50)
        unexpected = (
            ScoredCase(false_sensor, "cover-open", "component", "0103", when, when, None, "urgent"),
        )
    missed = tuple(i.id for i in truth.incidents if i.id not in caught)
    kind = KindScore(
        kind="cover_open",
        incidents=len(truth.incidents),
        rule="cover-open",
        emergency=True,
        detected=len(caught),
        delays_s=tuple(caught.values()),
        missed=missed,
    )
    score = Score(
        scenario=truth.scenario,
        sensor_days=truth.sensor_days,
        cases=len(cases) + len(unexpected),
        kinds=(kind,),
        false_alarms=len(unexpected),
        unexpected=unexpected,
    )
    return ReportVariant(label, score, tuple(cases), RULES, value)


def _signals(truth: GroundTruth, variant: ReportVariant) -> dict[Window, list[tuple[float, float]]]:
    """A cover that lifts to 75° for the incident and drops back, 1 reading per 10 s."""
    signals = {}
    for window in plot_windows(truth, variant):
        incident = next(i for i in truth.incidents if i.sensor_id == window.sensor_id)
        points = []
        t = window.start
        while t <= window.end:
            points.append((t.timestamp(), 75.0 if incident.start <= t < incident.end else 0.5))
            t += timedelta(seconds=10)
        signals[window] = points
    return signals


class _Tags(HTMLParser):
    """Start and end tags, to check that every element is closed in order."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr"})
    SVG_LEAVES = frozenset({"line", "rect", "circle", "path", "polyline"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.attributes: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.extend((tag, name, value) for name, value in attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes.extend((tag, name, value) for name, value in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _well_formed(page: str) -> _Tags:
    tags = _Tags()
    tags.feed(page)
    tags.close()
    assert tags.problems == []
    assert tags.stack == []
    return tags


def test_the_report_escapes_every_text_and_refers_to_nothing_outside() -> None:
    caught = _incident(0, "st-1.cover-01")
    missed = _incident(1, "st-1.cover-02", start_min=20)
    evil = _incident(2, f"st-1.cover-{EVIL}", start_min=35)
    truth = _truth((caught, missed, evil))
    variant = _variant(truth, {"inc-000": 20.0, "inc-002": 25.0}, label=f"rules {EVIL}")
    page = render_report(
        truth=truth, variants=[variant], signals=_signals(truth, variant), recording=EVIL
    )
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    for url in URLS:
        assert url not in page
    tags = _well_formed(page)
    for tag, name, value in tags.attributes:
        assert name not in ("src", "srcset", "action", "formaction"), (tag, name)
        assert not name.startswith("on"), (tag, name)  # no script of any kind
        if name == "href":
            assert value is not None
            assert value.startswith("#"), value
    assert "default-src 'none'" in page  # the page may not fetch anything, whatever it says


def test_the_report_plots_each_incident_and_names_the_missed_and_false_ones() -> None:
    truth = _truth((_incident(0, "st-1.cover-01"), _incident(1, "st-1.cover-02", start_min=20)))
    variant = _variant(truth, {"inc-000": 20.0}, false_sensor="st-1.cover-04")
    page = render_report(
        truth=truth, variants=[variant], signals=_signals(truth, variant), recording="r.csrec"
    )
    figures = re.findall(r"<figure.*?</figure>", page, re.S)
    assert len(figures) == 2
    caught, missed = figures
    for figure in figures:
        assert '<path class="signal" d="M' in figure
        assert 'class="th-open"' in figure  # the rule's open threshold ...
        assert "open &gt; 20" in figure
        assert 'class="th-clear"' in figure  # ... and its clear threshold
        assert "clear &lt; 8" in figure
        assert "tilt_deg (°)" in figure  # axis titles with units
        assert "time since the incident began (s)" in figure
    assert 'class="mark-opened"' in caught
    assert 'class="mark-cleared"' in caught
    assert "opened +20 s after the incident began" in caught
    assert "MISSED" not in caught
    assert 'class="missed"' in missed
    assert "MISSED" in missed
    assert 'class="mark-opened"' not in missed
    missed_section = page.split("<h3>Missed</h3>")[1].split("<h3>")[0]
    assert "inc-001" in missed_section
    assert "inc-000" not in missed_section
    false_section = page.split("<h3>False cases</h3>")[1].split("<h2>")[0]
    assert "st-1.cover-04" in false_section
    assert 'class="bar"' in page  # the delay histogram
    assert 'viewBox="0 0 640 ' in page
    assert "svg.plot{display:block;width:100%" in page


def test_a_sweep_report_draws_the_curve_and_marks_the_recommended_value() -> None:
    truth = _truth((_incident(0, "st-1.cover-01"), _incident(1, "st-1.cover-02", start_min=20)))
    variants = [
        _variant(truth, {"inc-000": 20.0, "inc-001": 20.0}, label="x=20", value=20),
        _variant(truth, {"inc-000": 20.0, "inc-001": 20.0}, label="x=30", value=30),
        _variant(truth, {"inc-000": 20.0}, label="x=40", value=40, false_sensor="st-1.cover-03"),
    ]
    page = render_report(
        truth=truth,
        variants=variants,
        signals=_signals(truth, variants[1]),
        recording="r.csrec",
        sweep_name="cover-open.when.above",
        recommended=1,
    )
    _well_formed(page)
    assert '<polyline class="curve-recall"' in page
    assert '<polyline class="curve-alarms"' in page
    assert 'class="recommended"' in page
    assert "recommended 30°" in page
    assert "cover-open.when.above (°)" in page  # the swept value's axis, with its unit
    assert "30 ◀ recommended" in page
    assert 'class="dot"' in page  # the delay strip, one row per value
    assert "40: 1 missed, 1 false alarms" in page


def test_the_plots_stop_at_the_cap_and_say_so() -> None:
    incidents = tuple(
        _incident(k, f"st-1.cover-{k:02d}", start_min=k * 0.5) for k in range(MAX_PLOTS + 5)
    )
    truth = _truth(incidents)
    variant = _variant(truth, {i.id: 20.0 for i in incidents[::2]})
    assert len(plot_windows(truth, variant)) == MAX_PLOTS
    page = render_report(truth=truth, variants=[variant], signals={}, recording="r.csrec")
    assert page.count("<figure") == MAX_PLOTS
    assert f"The first {MAX_PLOTS} of {MAX_PLOTS + 5} incidents are plotted" in page
    assert "no tilt_deg readings of this sensor in the recording here" in page
    assert f"inc-{MAX_PLOTS + 4:03d}" in page  # listed, though not plotted


def _batch(station: str, sent: datetime, readings: list[dict[str, Any]]) -> Record:
    payload = {
        "v": 1,
        "station_id": station,
        "boot_epoch": 1,
        "seq": 0,
        "sent_at": sent.isoformat(),
        "readings": readings,
    }
    topic = f"citysense/v1/stations/{station}/telemetry"
    return Record(ns_from_datetime(sent), topic, json.dumps(payload).encode())


def test_signals_are_read_from_a_recording_once_each_in_device_time(tmp_path: Path) -> None:
    sensor = "st-1.cover-01"

    def reading(ts: datetime, tilt: float, who: str = sensor) -> dict[str, Any]:
        return {
            "sensor_id": who,
            "kind": "cover",
            "ts": ts.isoformat(),
            "values": {"tilt_deg": tilt},
        }

    start = T0 + timedelta(minutes=10)
    window = Window(sensor, "tilt_deg", start, start + timedelta(minutes=5))
    path = tmp_path / "r.csrec"
    with RecordingWriter(path, {"scenario": "x"}) as writer:
        writer.write(_batch("st-1", T0, [reading(T0, 0.3)]))  # before: the state carried in
        inside = start + timedelta(minutes=1)
        batch = _batch("st-1", inside, [reading(inside, 75.0), reading(inside, 9.0, "st-1.x")])
        writer.write(batch)
        writer.write(batch)  # re-sent: counted once
        reset = datetime(2000, 1, 1, tzinfo=UTC)  # a device clock reset: drawn at arrival
        writer.write(_batch("st-1", start + timedelta(minutes=2), [reading(reset, 74.0)]))
        later = start + timedelta(minutes=9)
        writer.write(_batch("st-1", later, [reading(later, 0.4)]))  # after the window
        writer.write(Record(ns_from_datetime(later), "citysense/v1/stations/st-1/telemetry", b"{"))
    points = gather_signals(path, [window])[window]
    assert points == [
        (start.timestamp(), 0.3),
        ((start + timedelta(minutes=1)).timestamp(), 75.0),
        ((start + timedelta(minutes=2)).timestamp(), 74.0),
    ]
    assert gather_signals(path, []) == {}


def test_the_report_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    write_report(target, "<!DOCTYPE html>new")
    assert target.read_text(encoding="utf-8") == "<!DOCTYPE html>new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left
    with pytest.raises(FileNotFoundError, match="missing"):
        write_report(tmp_path / "missing" / "report.html", "x")


def test_a_report_case_reads_the_api_shape() -> None:
    case = ReportCase.from_case(
        {
            "rule_id": "cover-open",
            "sensor_id": "st-1.cover-01",
            "category": "component",
            "class_code": "0103",
            "started_at": "2026-07-01T08:05:00Z",
            "opened_at": "2026-07-01T08:05:20Z",
            "cleared_at": None,
            "severity": "urgent",
            "members": ["st-1.cover-01", "st-1.cover-02"],
            "threshold": 20,
        }
    )
    assert case.opened_at == T0 + timedelta(minutes=5, seconds=20)
    assert case.cleared_at is None
    assert case.sensors == ("st-1.cover-01", "st-1.cover-01", "st-1.cover-02")
    assert case.threshold == 20.0


# --- end to end: the CLI writes it, Chromium opens it -------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cover-open simulated (two covers lifted: 75° and 30°) and a rule file at 35°, which
    misses the 30° one."""
    out = tmp_path_factory.mktemp("runs")
    run_scenario(load_scenario(SCENARIOS / "cover-open.yaml"), out)
    default = DEFAULT_RULES_FILE.read_text(encoding="utf-8")
    strict = default.replace(
        "when: {field: tilt_deg, above: 20}", "when: {field: tilt_deg, above: 35}"
    )
    assert strict != default
    (out / "strict.yaml").write_text(strict, encoding="utf-8")
    return out


def _backtest(runs: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            str(runs / "cover-open.csrec"),
            "--truth",
            str(runs / "cover-open.truth.json"),
            *args,
        ],
        env={"COLUMNS": "200"},
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def reports(runs: Path) -> dict[str, Path]:
    """A report of one rule set that misses an incident, and one of a sweep."""
    single, sweep = runs / "single.html", runs / "sweep.html"
    code, out, err = _backtest(runs, "--rules", str(runs / "strict.yaml"), "--report", str(single))
    assert code == 0, out + err
    assert f"report: {single}" in out
    code, out, err = _backtest(
        runs, "--sweep", "cover-open.when.above=20:40:10", "--report", str(sweep)
    )
    assert code == 0, out + err
    assert f"report: {sweep}" in out
    return {"single": single, "sweep": sweep}


def test_the_cli_report_names_the_missed_incident(reports: dict[str, Path]) -> None:
    page = reports["single"].read_text(encoding="utf-8")
    for url in URLS:
        assert url not in page
    assert page.count("<figure") == 2
    missed = re.findall(r'<figure id="inc-cover-open-001" class="missed">.*?</figure>', page, re.S)
    assert len(missed) == 1
    assert "MISSED" in missed[0]
    assert "open &gt; 35°" in missed[0]
    sweep = reports["sweep"].read_text(encoding="utf-8")
    assert '<polyline class="curve-recall"' in sweep
    assert "recommended 20°" in sweep


def test_a_report_into_a_missing_directory_is_refused_before_anything_runs(
    runs: Path,
) -> None:
    target = runs / "no-such-dir" / "report.html"
    code, out, err = _backtest(runs, "--report", str(target))
    assert code == 2, out + err
    assert "no directory" in err
    assert "Traceback" not in out + err
    code, out, err = _backtest(runs, "--report", str(runs))
    assert code == 2, out + err
    assert "is a directory" in err
    result = CliRunner().invoke(
        app, ["backtest", str(runs / "cover-open.csrec"), "--report", str(runs / "r.html")]
    )
    assert result.exit_code == 2
    assert "needs --truth" in result.stderr


def test_with_json_the_report_line_goes_to_stderr(runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    code, out, err = _backtest(runs, "--json", "--report", str(target))
    assert code == 0, out + err
    assert json.loads(out)["cases"] == 2
    assert f"report: {target}" in err
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def _browser_or_fail() -> Any:
    """playwright's sync API and Debian's Chromium; missing: fail under CI, else skip."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (make chromium, or apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_playwright


PLOTS_DRAWN = """() => Array.from(document.querySelectorAll('svg.plot')).map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = Array.from(svg.querySelectorAll(
      'path.signal, polyline, rect.bar, circle.dot'))
    .map(el => el.getBBox()).filter(b => b.width > 0 || b.height > 0);
  return {label: svg.getAttribute('aria-label'), width: box.width, height: box.height,
          lines: svg.querySelectorAll('path, polyline').length, marks: marks.length};
})"""


@pytest.mark.integration
def test_the_reports_open_offline_in_chromium_and_fit_a_phone(reports: dict[str, Path]) -> None:
    sync_playwright = _browser_or_fail()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            for name, path in reports.items():
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                errors: list[str] = []
                requests: list[str] = []
                page.on(
                    "console",
                    lambda message, errors=errors: (
                        errors.append(message.text) if message.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
                page.on("request", lambda request, requests=requests: requests.append(request.url))
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                plots = page.evaluate(PLOTS_DRAWN)
                expected = 2 + 1 + (2 if name == "sweep" else 0)  # incidents, delays, sweep
                assert len(plots) == expected, plots
                for plot in plots:
                    assert plot["width"] > 300, plot
                    assert plot["height"] > 50, plot
                    assert plot["marks"] > 0, plot  # data drawn with a size, not just axes
                incident_plots = [p for p in plots if ": tilt_deg of " in p["label"]]
                assert len(incident_plots) == 2
                assert all(p["lines"] > 0 for p in incident_plots)
                if name == "sweep":
                    assert any(p["label"].startswith("sweep of") for p in plots)
                    assert page.locator("polyline.curve-recall").count() == 1
                else:
                    missed = page.locator("figure.missed")
                    assert missed.count() == 1
                    assert "MISSED" in missed.inner_text()
                    assert "cover-open-001" in missed.inner_text()
                page.set_viewport_size({"width": 390, "height": 844})
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{name}: {width} px wide at a 390 px viewport"
                narrow = page.evaluate(PLOTS_DRAWN)
                assert all(p["width"] > 0 and p["marks"] > 0 for p in narrow), narrow
                assert errors == [], errors
                assert requests == [path.as_uri()], requests
                page.close()
        finally:
            browser.close()
