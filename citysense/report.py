"""The backtest's HTML report: one self-contained file that opens offline.

``render_report`` is pure (data in, HTML out): a summary table per rule set or swept value, one
plot per labelled incident (the incident sensor's watched value against the rule's open and
clear thresholds, where the case opened and cleared, or "missed"), the detection delays, the
sweep curve, and the missed incidents and false cases by name. Everything is inline: CSS in a
``<style>`` block, plots as SVG drawn here, no script, no font, no image, no URL; a
Content-Security-Policy forbids every fetch anyway. All text goes through ``html.escape``.

``gather_signals`` reads the plotted values from a recording (one pass), ``build_report`` does
both, and ``write_report`` writes the file atomically.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recording.format import RecordingReader
from rules import RuleSet
from rules.schema import Leaf, Rule, leaves
from simulator.score import MATCH_SLACK, WATCHED_VALUE, KindScore, Score
from simulator.truth import GroundTruth, LabelledIncident

MAX_PLOTS = 50
"""Incidents plotted, in the truth file's order; the rest are listed only."""
MAX_ROWS = 1000
"""Rows of a table of incidents or false cases."""
MAX_POINTS = 1200
"""Points of a plotted signal; longer series are reduced to each time bucket's min and max."""
MAX_STRIP_ROWS = 60
"""Rule sets or swept values in the delay strip chart."""
CARRY_IN = timedelta(hours=26)
"""A reading this long before a window still says the sensor's state at the window's start
(the rules' default ``stale_after``): it is drawn from there."""
CLOCK_RESET_LIMIT = timedelta(days=1)
"""A reading stamped further than this from its publish time is drawn at the publish time (a
device clock reset to 2000-01-01, as the rules engine evaluates it)."""

UNITS = {
    "tilt_deg": "°",
    "water_level_m": "m",
    "gas_ppm": "ppm",
    "pressure_mpa": "MPa",
    "battery_v": "V",
    "signal_dbm": "dBm",
    "vibration_g": "g",
}
_DURATION_FIELDS = frozenset({"hold", "window", "quiet", "stale_after", "tau", "within", "no_data"})
_VALUE_FIELDS = frozenset({"above", "below", "outside", "drop", "steady"})

# Plot geometry, in SVG user units (the viewBox scales it to the page's width).
_W = 640.0
_H = 260.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 62.0, 22.0, 24.0, 46.0


# --- data in ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportCase:
    """A case as the report needs it (from a ``CaseOut`` or the API's JSON)."""

    rule_id: str
    sensor_id: str
    category: str
    class_code: str
    started_at: datetime
    opened_at: datetime
    cleared_at: datetime | None = None
    severity: str | None = None
    members: tuple[str, ...] = ()
    threshold: float | None = None
    """The threshold the case opened at (for a drop rule: the baseline minus the drop)."""

    @property
    def sensors(self) -> tuple[str, ...]:
        return (self.sensor_id, *self.members)

    @classmethod
    def from_case(cls, item: Mapping[str, Any] | Any) -> ReportCase:
        def value(name: str) -> Any:
            if isinstance(item, Mapping):
                return item.get(name)
            return getattr(item, name, None)

        def time(name: str) -> datetime | None:
            raw = value(name)
            if raw is None or isinstance(raw, datetime):
                return raw
            return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))

        started, opened = time("started_at"), time("opened_at")
        if started is None or opened is None:
            raise ValueError("a case needs started_at and opened_at")
        threshold = value("threshold")
        return cls(
            rule_id=str(value("rule_id")),
            sensor_id=str(value("sensor_id")),
            category=str(value("category")),
            class_code=str(value("class_code")),
            started_at=started,
            opened_at=opened,
            cleared_at=time("cleared_at"),
            severity=value("severity"),
            members=tuple(str(m) for m in value("members") or ()),
            threshold=None if threshold is None else float(threshold),
        )


@dataclass(frozen=True, slots=True)
class ReportVariant:
    """One rule set of the backtest (or one swept value): how it scored and its cases."""

    label: str
    score: Score
    cases: tuple[ReportCase, ...]
    rules: RuleSet
    value: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """One value of one sensor over a stretch of time: what a plot reads from a recording."""

    sensor_id: str
    field: str
    start: datetime
    end: datetime


Points = Sequence[tuple[float, float]]
"""(seconds since the Unix epoch, value), in time order."""


# --- which incident, case, rule and window a plot shows ----------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    role: str  # "open" | "clear"
    op: str  # ">" | "<"
    value: float


@dataclass(frozen=True, slots=True)
class _Plan:
    incident: LabelledIncident
    status: str  # "caught" | "missed" | "unscored"
    field: str | None
    rule: Rule | None
    case: ReportCase | None
    window: Window | None
    note: str


def primary_index(variants: Sequence[ReportVariant], recommended: int | None) -> int:
    """The variant the incident plots show: the recommended value of a sweep, else the first."""
    return recommended if recommended is not None and 0 <= recommended < len(variants) else 0


def plot_windows(truth: GroundTruth, variant: ReportVariant) -> list[Window]:
    """What ``gather_signals`` must read for the incident plots of ``variant``."""
    return [p.window for p in _plans(truth, variant)[:MAX_PLOTS] if p.window is not None]


def _kind_score(score: Score, kind: str) -> KindScore | None:
    return next((k for k in score.kinds if k.kind == kind), None)


def _matches(case: ReportCase, incident: LabelledIncident) -> bool:
    return (
        any(sensor in incident.sensors for sensor in case.sensors)
        and incident.start - MATCH_SLACK <= case.started_at <= incident.end + MATCH_SLACK
    )


def _case_for(incident: LabelledIncident, cases: Sequence[ReportCase]) -> ReportCase | None:
    """The case that caught ``incident``: the first opened of the right class and severity,
    else the first that matches at all (a wrong class still shows where it opened)."""
    found = sorted((c for c in cases if _matches(c, incident)), key=lambda c: c.opened_at)
    right = [
        c
        for c in found
        if (c.category, c.class_code) == (incident.expected_category, incident.expected_class)
        and (c.severity == "maintenance") == incident.maintenance
    ]
    return (right or found)[0] if found else None


def _rule_for(
    incident: LabelledIncident, field: str, rules: RuleSet, case: ReportCase | None
) -> Rule | None:
    if case is not None:
        with_id = [r for r in rules.rules if r.id == case.rule_id]
        if with_id:
            return with_id[0]
    sensor_kind = WATCHED_VALUE[incident.kind][0]
    watching = [
        r for r in rules.rules if r.enabled and r.kind == sensor_kind and field in r.fields()
    ]

    def fit(rule: Rule) -> tuple[bool, bool]:
        maintenance = rule.severity == "maintenance"
        return (rule.severity != incident.expected_severity, maintenance != incident.maintenance)

    return min(watching, key=fit) if watching else None


def _plans(truth: GroundTruth, variant: ReportVariant) -> list[_Plan]:
    plans = []
    for incident in truth.incidents:
        kind = _kind_score(variant.score, incident.kind)
        watched = WATCHED_VALUE.get(incident.kind)
        field = watched[1] if watched else None
        case = _case_for(incident, variant.cases)
        if kind is None or kind.rule is None or field is None:
            status = "unscored"
            note = f"no enabled rule watches {'.'.join(watched) if watched else incident.kind}"
        elif incident.id in kind.missed:
            status, note = "missed", "missed: no case of the right class and severity"
            if case is not None:
                note += f" (a {case.rule_id} case of class {case.class_code} matched)"
        else:
            status, note = "caught", ""
        if status == "unscored":
            case = None
        rule = None if field is None else _rule_for(incident, field, variant.rules, case)
        window = None
        if field is not None:
            span = incident.end - incident.start
            pad = max(timedelta(seconds=60), span / 8)
            start, end = incident.start - pad, incident.end + pad
            if case is not None:
                start = min(start, case.started_at - pad / 4)
                end = max(end, (case.cleared_at or case.opened_at) + pad / 4)
            window = Window(incident.sensor_id, field, start, end)
        plans.append(_Plan(incident, status, field, rule, case, window, note))
    return plans


def thresholds(rule: Rule, field: str) -> tuple[list[Threshold], list[str]]:
    """The fixed open and clear thresholds ``rule`` has on ``field``, and notes for the tests
    that are not a fixed line (a drop below a learned baseline, a rate)."""
    found: list[Threshold] = []
    notes: list[str] = []

    def add(role: str, leaf: Leaf) -> None:
        if leaf.field != field:
            return
        if leaf.above is not None:
            found.append(Threshold(role, ">", leaf.above))
        if leaf.below is not None:
            found.append(Threshold(role, "<", leaf.below))
        if leaf.outside is not None:
            found.append(Threshold(role, "<", leaf.outside[0]))
            found.append(Threshold(role, ">", leaf.outside[1]))
        if leaf.drop is not None:
            notes.append(f"{role}: {_num(leaf.drop)} {_unit(field)} below the learned baseline")
        if leaf.drop_fraction is not None:
            notes.append(f"{role}: {leaf.drop_fraction:.0%} below the learned baseline")
        if leaf.rate_above is not None:
            notes.append(f"{role}: rising faster than {_num(leaf.rate_above)} {_unit(field)}/s")
        if leaf.rate_below is not None:
            notes.append(f"{role}: changing slower than {_num(leaf.rate_below)} {_unit(field)}/s")

    for leaf in rule.watched():
        add("open", leaf)
    if rule.clear is not None and rule.clear.when is not None:
        for leaf in leaves(rule.clear.when):
            add("clear", leaf)
    elif rule.when is not None:
        notes.append("clears when the open condition no longer holds")
    return found, notes


# --- reading the signals -----------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def gather_signals(
    recording: str | os.PathLike[str], windows: Iterable[Window]
) -> dict[Window, list[tuple[float, float]]]:
    """Each window's readings from the recording's telemetry, in one pass: (epoch seconds,
    value) by the device's time stamp (a reading stamped more than a day from its publish time
    is placed at the publish time), a re-sent reading counted once, in time order. The last
    reading before a window (within ``CARRY_IN``) is the sensor's state at its start: it comes
    first, at the window's start."""
    wanted: dict[str, list[Window]] = {}
    for window in windows:
        wanted.setdefault(window.sensor_id, []).append(window)
    found: dict[Window, dict[float, float]] = {w: {} for ws in wanted.values() for w in ws}
    before: dict[Window, tuple[datetime, float]] = {}
    needles = [(sensor.encode(), sensor) for sensor in wanted]
    if not needles:
        return {}
    with RecordingReader(recording) as reader:
        for record in reader:
            if not record.topic.endswith("/telemetry"):
                continue
            if not any(needle in record.payload for needle, _ in needles):
                continue
            try:
                readings = json.loads(record.payload).get("readings") or ()
            except (ValueError, AttributeError):
                continue  # garbage on the topic: ingest refuses it too
            for reading in readings:
                if not isinstance(reading, dict):
                    continue
                targets = wanted.get(str(reading.get("sensor_id")))
                values = reading.get("values")
                if not targets or not isinstance(values, dict):
                    continue
                try:
                    stamp = _parse_time(str(reading["ts"]))
                except (KeyError, ValueError):
                    continue
                if stamp.tzinfo is None:
                    stamp = stamp.replace(tzinfo=UTC)
                if abs(stamp - record.ts) > CLOCK_RESET_LIMIT:
                    stamp = record.ts
                for window in targets:
                    value = values.get(window.field)
                    if not isinstance(value, int | float) or isinstance(value, bool):
                        continue
                    if not math.isfinite(value):
                        continue
                    if window.start <= stamp <= window.end:
                        found[window][stamp.timestamp()] = float(value)
                    elif window.start - CARRY_IN <= stamp < window.start:
                        last = before.get(window)
                        if last is None or stamp >= last[0]:
                            before[window] = (stamp, float(value))
    for window, (_, value) in before.items():
        found[window].setdefault(window.start.timestamp(), value)
    return {w: sorted(points.items()) for w, points in found.items()}


# --- formatting --------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _unit(field: str) -> str:
    return UNITS.get(field, "")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min".replace(".0 ", " ")
    return f"{seconds / 3600:.1f} h".replace(".0 ", " ")


def _offset(seconds: float) -> str:
    return ("−" if seconds < 0 else "+") + _duration(seconds)


def _nice(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float], float]:
    """An axis range widened to round ticks, the ticks and their step."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    ticks = [start + k * step for k in range(round((stop - start) / step) + 1)]
    return start, stop, ticks, step


def _tick(value: float, step: float) -> str:
    digits = f"{step:.6g}"
    decimals = 0 if "e" in digits or "." not in digits else len(digits.partition(".")[2])
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


class _Frame:
    """Maps data to the plot area of a ``_W`` x ``height`` SVG."""

    def __init__(
        self,
        x: tuple[float, float],
        y: tuple[float, float],
        *,
        height: float = _H,
        left: float = _LEFT,
        right: float = _RIGHT,
    ) -> None:
        self.x0, self.x1 = x
        self.y0, self.y1 = y
        self.height = height
        self.left, self.right = left, _W - right
        self.top, self.bottom = _TOP, height - _BOTTOM

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _svg(label: str, height: float, body: Sequence[str]) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {_W:.0f} {height:.0f}" role="img" '
        f'aria-label="{_e(label)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def _axes(
    frame: _Frame,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[tuple[float, str]],
    x_label: str,
    y_label: str,
) -> list[str]:
    """Frame, grid, tick labels and axis titles."""
    out = [
        f'<rect class="area" x="{_f(frame.left)}" y="{_f(frame.top)}" '
        f'width="{_f(frame.right - frame.left)}" height="{_f(frame.bottom - frame.top)}"/>'
    ]
    for value, text in y_ticks:
        y = frame.y(value)
        out.append(
            f'<line class="grid" x1="{_f(frame.left)}" x2="{_f(frame.right)}" '
            f'y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<text class="tick" x="{_f(frame.left - 6)}" y="{_f(y + 4)}" '
            f'text-anchor="end">{_e(text)}</text>'
        )
    for value, text in x_ticks:
        x = frame.x(value)
        out.append(
            f'<line class="grid" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.top)}" '
            f'y2="{_f(frame.bottom)}"/>'
            f'<text class="tick" x="{_f(x)}" y="{_f(frame.bottom + 16)}" '
            f'text-anchor="middle">{_e(text)}</text>'
        )
    middle = (frame.left + frame.right) / 2
    out.append(
        f'<text class="axis" x="{_f(middle)}" y="{_f(frame.height - 8)}" '
        f'text-anchor="middle">{_e(x_label)}</text>'
        f'<text class="axis" transform="translate(14 {_f((frame.top + frame.bottom) / 2)}) '
        f'rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    return out


# --- the incident plot -------------------------------------------------------------------------


def _time_unit(span_s: float) -> tuple[str, float]:
    if span_s <= 20 * 60:
        return "s", 1.0
    if span_s <= 12 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _reduce(points: Points, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most about ``limit`` points: each time bucket's lowest and highest, in time order."""
    if len(points) <= limit:
        return list(points)
    t0, t1 = points[0][0], points[-1][0]
    buckets = max(1, limit // 2)
    width = (t1 - t0) / buckets or 1.0
    kept: dict[int, list[tuple[float, float]]] = {}
    for point in points:
        index = min(buckets - 1, int((point[0] - t0) / width))
        bucket = kept.setdefault(index, [point, point])
        if point[1] < bucket[0][1]:
            bucket[0] = point
        if point[1] > bucket[1][1]:
            bucket[1] = point
    reduced = {p for pair in kept.values() for p in pair}
    return sorted(reduced)


def _incident_plot(plan: _Plan, points: Points, label: str) -> str:
    incident, window, field = plan.incident, plan.window, plan.field
    assert window is not None
    assert field is not None
    unit = _unit(field)
    base = incident.start.timestamp()
    span = (window.end - window.start).total_seconds()
    unit_name, per = _time_unit(span)
    lines = thresholds(plan.rule, field)[0] if plan.rule is not None else []
    case = plan.case
    values = [v for _, v in points] + [t.value for t in lines]
    show_case_threshold = case is not None and case.threshold is not None and not lines
    if show_case_threshold and case is not None and case.threshold is not None:
        values.append(case.threshold)
    y0, y1, y_ticks, y_step = _nice(min(values, default=0.0), max(values, default=1.0), 5)
    x0 = (window.start.timestamp() - base) / per
    x1 = (window.end.timestamp() - base) / per
    _, _, x_ticks, x_step = _nice(x0, x1, 6)
    x_ticks = [t for t in x_ticks if x0 - 1e-9 <= t <= x1 + 1e-9]
    frame = _Frame((x0, x1), (y0, y1))
    body = _axes(
        frame,
        [(t, _tick(t, x_step)) for t in x_ticks],
        [(t, _tick(t, y_step)) for t in y_ticks],
        f"time since the incident began ({unit_name})",
        f"{field} ({unit})" if unit else field,
    )

    def px(epoch_s: float) -> float:
        return frame.x((epoch_s - base) / per)

    band_l = px(incident.start.timestamp())
    band_r = px(incident.end.timestamp())
    body.append(
        f'<rect class="band" x="{_f(band_l)}" y="{_f(frame.top)}" '
        f'width="{_f(max(band_r - band_l, 1.0))}" height="{_f(frame.bottom - frame.top)}"/>'
        f'<text class="bandlabel" x="{_f(band_l + 4)}" y="{_f(frame.bottom - 5)}">incident</text>'
    )
    labels: list[str] = []
    for threshold in lines:
        y = frame.y(threshold.value)
        anchor_x, anchor = (
            (frame.right - 4, "end") if threshold.role == "open" else (frame.left + 4, "start")
        )
        text = f"{threshold.role} {threshold.op} {_num(threshold.value)}{_spaced(unit)}"
        body.append(
            f'<line class="th-{threshold.role}" x1="{_f(frame.left)}" x2="{_f(frame.right)}" '
            f'y1="{_f(y)}" y2="{_f(y)}"/>'
        )
        labels.append(  # drawn last: over the signal
            f'<text class="th-label th-{threshold.role}-label" x="{_f(anchor_x)}" '
            f'y="{_f(y - 4)}" text-anchor="{anchor}">{_e(text)}</text>'
        )
    shown = _reduce(points)
    if shown:
        path = [f"M{_f(px(shown[0][0]))} {_f(frame.y(shown[0][1]))}"]
        for t, v in shown[1:]:
            path.append(f"H{_f(px(t))}V{_f(frame.y(v))}")
        body.append(f'<path class="signal" d="{"".join(path)}"/>')
        if len(shown) <= 80:
            body.extend(
                f'<circle class="reading" cx="{_f(px(t))}" cy="{_f(frame.y(v))}" r="2.2"/>'
                for t, v in shown
            )
    else:
        body.append(
            f'<text class="nodata" x="{_f((frame.left + frame.right) / 2)}" '
            f'y="{_f((frame.top + frame.bottom) / 2)}" text-anchor="middle">'
            f"no {_e(field)} readings of this sensor in the recording here</text>"
        )
    if case is not None:
        opened = px(case.opened_at.timestamp())
        began = px(case.started_at.timestamp())
        body.append(
            f'<line class="mark-began" x1="{_f(began)}" x2="{_f(began)}" '
            f'y1="{_f(frame.top)}" y2="{_f(frame.bottom)}"/>'
            f'<line class="mark-opened" x1="{_f(opened)}" x2="{_f(opened)}" '
            f'y1="{_f(frame.top)}" y2="{_f(frame.bottom)}"/>'
            f'<text class="mark-label opened-label" x="{_f(opened + 3)}" '
            f'y="{_f(frame.top + 26)}">opened</text>'
        )
        if show_case_threshold and case.threshold is not None:
            y = frame.y(case.threshold)
            body.append(
                f'<line class="th-open" x1="{_f(began - 14)}" x2="{_f(opened + 14)}" '
                f'y1="{_f(y)}" y2="{_f(y)}"/>'
                f'<text class="th-label th-open-label" x="{_f(opened + 16)}" '
                f'y="{_f(y + 4)}">threshold at opening {_e(_num(case.threshold))}'
                f"{_e(_spaced(unit))}</text>"
            )
        if case.cleared_at is not None:
            cleared = px(case.cleared_at.timestamp())
            body.append(
                f'<line class="mark-cleared" x1="{_f(cleared)}" x2="{_f(cleared)}" '
                f'y1="{_f(frame.top)}" y2="{_f(frame.bottom)}"/>'
                f'<text class="mark-label cleared-label" x="{_f(cleared - 3)}" '
                f'y="{_f(frame.top + 40)}" text-anchor="end">cleared</text>'
            )
    if plan.status == "missed":
        body.append(
            f'<text class="missed-label" x="{_f(frame.right - 8)}" y="{_f(frame.top + 44)}" '
            'text-anchor="end">MISSED</text>'
        )
    return _svg(label, _H, [*body, *labels])


def _spaced(unit: str) -> str:
    """A unit after a number: 20°, 1.5 m."""
    return unit if not unit or unit == "°" else f" {unit}"


def _incident_caption(plan: _Plan) -> str:
    incident, case = plan.incident, plan.case
    parts = [
        f'<span class="badge {plan.status}">{_e(plan.status.upper())}</span> '
        f"<b>{_e(incident.id)}</b> · {_e(incident.kind)} · "
        f'<span class="id">{_e(incident.sensor_id)}</span>',
        f"began {_e(_when(incident.start))}, lasted "
        f"{_e(_duration((incident.end - incident.start).total_seconds()))}",
    ]
    if case is not None:
        opened = (case.opened_at - incident.start).total_seconds()
        text = f"case {case.rule_id} ({case.severity or 'urgent'}, {case.class_code}) opened "
        text += f"{_offset(opened)} after the incident began"
        if case.cleared_at is not None:
            cleared = (case.cleared_at - incident.end).total_seconds()
            text += f", cleared {_offset(cleared)} after it ended"
        else:
            text += ", not cleared by the end of the recording"
        parts.append(_e(text))
    if plan.note:
        parts.append(f'<span class="{plan.status}">{_e(plan.note)}</span>')
    if plan.rule is not None and plan.field is not None:
        notes = thresholds(plan.rule, plan.field)[1]
        rule_text = f"rule {plan.rule.id}"
        if plan.rule.hold:
            rule_text += f", hold {_duration(plan.rule.hold)}"
        if plan.rule.clear is not None and plan.rule.clear.hold:
            rule_text += f", clear hold {_duration(plan.rule.clear.hold)}"
        if notes:
            rule_text += "; " + "; ".join(notes)
        parts.append(_e(rule_text))
    return "<br>".join(parts)


# --- delays, the sweep curve -------------------------------------------------------------------


def _delay_scale(delays: Sequence[float]) -> tuple[bool, float, float, list[float], float]:
    """(log?, lo, hi, ticks, step) for delays in seconds; a log axis for a wide spread."""
    positive = [d for d in delays if d > 0]
    if delays and len(positive) == len(delays) and max(delays) / min(delays) > 30:
        lo = math.floor(math.log10(min(delays)))
        hi = math.ceil(math.log10(max(delays)) + 1e-9)
        hi = max(hi, lo + 1)
        return True, float(lo), float(hi), [float(k) for k in range(lo, hi + 1)], 1.0
    low = min(0.0, *delays) if delays else 0.0
    high = max(delays, default=1.0)
    lo_, hi_, ticks, step = _nice(low, high + (high - low) * 0.05 + 1e-9, 6)
    return False, lo_, hi_, ticks, step


def _log_tick(power: float) -> str:
    value = 10**power
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _delay_histogram(delays: Sequence[float], label: str) -> str:
    log, lo, hi, ticks, step = _delay_scale(delays)
    bins = max(1, round(hi - lo) * 4) if log else max(1, round((hi - lo) / (step / 2)))
    width = (hi - lo) / bins
    counts = [0] * bins
    for delay in delays:
        position = math.log10(delay) if log else delay
        counts[min(bins - 1, max(0, int((position - lo) / width)))] += 1
    _, y1, y_ticks, y_step = _nice(0, max(max(counts, default=0), 1), 4)
    y_step = max(y_step, 1.0)
    y_ticks = [t for t in y_ticks if float(t).is_integer()]
    frame = _Frame((lo, hi), (0, y1))
    body = _axes(
        frame,
        [(t, _log_tick(t) if log else _tick(t, step)) for t in ticks],
        [(t, _tick(t, y_step)) for t in y_ticks],
        "detection delay: incident start to case opening, event time (s"
        + (", log scale)" if log else ")"),
        "incidents",
    )
    for index, count in enumerate(counts):
        if not count:
            continue
        left = frame.x(lo + index * width)
        right = frame.x(lo + (index + 1) * width)
        top = frame.y(count)
        body.append(
            f'<rect class="bar" x="{_f(left + 0.5)}" y="{_f(top)}" '
            f'width="{_f(max(right - left - 1, 1.0))}" height="{_f(frame.bottom - top)}">'
            f"<title>{count} incident(s)</title></rect>"
        )
    for delay in delays:
        x = frame.x(math.log10(delay) if log else delay)
        body.append(
            f'<line class="rug" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.bottom - 6)}" '
            f'y2="{_f(frame.bottom)}"/>'
        )
    if not delays:
        body.append(
            f'<text class="nodata" x="{_f((frame.left + frame.right) / 2)}" '
            f'y="{_f((frame.top + frame.bottom) / 2)}" text-anchor="middle">'
            "no incident was caught: no delay to show</text>"
        )
    return _svg(label, _H, body)


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _delay_strip(variants: Sequence[ReportVariant], names: Sequence[str], label: str) -> str:
    rows = list(zip(variants, names, strict=True))[:MAX_STRIP_ROWS]
    all_delays = [d for v, _ in rows for k in v.score.kinds for d in k.delays_s]
    log, lo, hi, ticks, step = _delay_scale(all_delays)
    row_h = 20.0
    height = _TOP + row_h * len(rows) + _BOTTOM
    frame = _Frame((lo, hi), (0, len(rows)), height=height, left=150)
    body = _axes(
        frame,
        [(t, _log_tick(t) if log else _tick(t, step)) for t in ticks],
        [],
        "detection delay (s" + (", log scale)" if log else ")"),
        "",
    )
    for index, (variant, name) in enumerate(rows):
        y = frame.top + row_h * (index + 0.5)
        body.append(
            f'<text class="tick" x="{_f(frame.left - 6)}" y="{_f(y + 4)}" '
            f'text-anchor="end">{_e(_short(name))}</text>'
        )
        delays = [d for k in variant.score.kinds for d in k.delays_s]
        for delay in delays:
            x = frame.x(math.log10(delay) if log else delay)
            body.append(f'<circle class="dot" cx="{_f(x)}" cy="{_f(y)}" r="3.5"/>')
        median = variant.score.delay_percentile(50)
        if median is not None:
            x = frame.x(math.log10(median) if log and median > 0 else median)
            body.append(
                f'<line class="median" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(y - 8)}" '
                f'y2="{_f(y + 8)}"/>'
            )
    return _svg(label, height, body)


def _sweep_unit(name: str, rules: RuleSet) -> str:
    rule_id, _, path = name.partition(".")
    last = path.rsplit(".", 1)[-1]
    if last in _DURATION_FIELDS:
        return "s"
    if last in _VALUE_FIELDS:
        field = next((r.primary_field for r in rules.rules if r.id == rule_id), "")
        return _unit(field)
    return ""


def _sweep_curve(
    variants: Sequence[ReportVariant], sweep_name: str, recommended: int | None, unit: str
) -> str:
    xs = [v.value for v in variants if v.value is not None]
    x0, x1, x_ticks, x_step = _nice(min(xs, default=0.0), max(xs, default=1.0), 6)
    most = max((v.score.false_alarms for v in variants), default=0)
    _, f1, f_ticks, f_step = _nice(0, max(most, 1), 4)
    f_step = max(f_step, 1.0)
    f_ticks = [t for t in f_ticks if float(t).is_integer()]
    frame = _Frame((x0, x1), (0, 1), right=62)
    body = _axes(
        frame,
        [(t, _tick(t, x_step)) for t in x_ticks],
        [(k / 4, f"{k * 25}") for k in range(5)],
        f"{sweep_name} ({unit})" if unit else sweep_name,
        "recall (%)",
    )
    for tick in f_ticks:
        y = frame.bottom - tick / (f1 or 1) * (frame.bottom - frame.top)
        body.append(
            f'<text class="tick fa-tick" x="{_f(frame.right + 6)}" y="{_f(y + 4)}">'
            f"{_e(_tick(tick, f_step))}</text>"
        )
    body.append(
        f'<text class="axis fa-axis" transform="translate({_f(_W - 12)} '
        f'{_f((frame.top + frame.bottom) / 2)}) rotate(90)" text-anchor="middle">'
        "false alarms (cases)</text>"
    )
    if recommended is not None and variants[recommended].value is not None:
        value = variants[recommended].value
        assert value is not None
        x = frame.x(value)
        body.append(
            f'<line class="recommended" x1="{_f(x)}" x2="{_f(x)}" y1="{_f(frame.top)}" '
            f'y2="{_f(frame.bottom)}"/>'
            f'<text class="recommended-label" x="{_f(x + 4)}" y="{_f(frame.top + 12)}">'
            f"recommended {_e(_num(value))}{_e(_spaced(unit))}</text>"
        )
    recall = [(v.value, v.score.recall) for v in variants if v.value is not None]
    recall_points = [(frame.x(x), frame.y(r)) for x, r in recall if r is not None]
    alarms = [
        (
            frame.x(v.value),
            frame.bottom - v.score.false_alarms / (f1 or 1) * (frame.bottom - frame.top),
        )
        for v in variants
        if v.value is not None
    ]
    for css, points, shape in (("recall", recall_points, "circle"), ("alarms", alarms, "rect")):
        if points:
            body.append(
                f'<polyline class="curve-{css}" points="'
                + " ".join(f"{_f(x)},{_f(y)}" for x, y in points)
                + '"/>'
            )
        for x, y in points:
            if shape == "circle":
                body.append(f'<circle class="pt-{css}" cx="{_f(x)}" cy="{_f(y)}" r="3.5"/>')
            else:
                body.append(
                    f'<rect class="pt-{css}" x="{_f(x - 3)}" y="{_f(y - 3)}" width="6" height="6"/>'
                )
    legend_y = frame.top - 8
    body.append(
        f'<circle class="pt-recall" cx="{_f(frame.left + 6)}" cy="{_f(legend_y - 4)}" r="3.5"/>'
        f'<text class="tick" x="{_f(frame.left + 14)}" y="{_f(legend_y)}">recall</text>'
        f'<rect class="pt-alarms" x="{_f(frame.left + 70)}" y="{_f(legend_y - 7)}" width="6" '
        f'height="6"/><text class="tick" x="{_f(frame.left + 82)}" y="{_f(legend_y)}">'
        "false alarms</text>"
    )
    return _svg(f"sweep of {sweep_name}: recall and false alarms", _H, body)


# --- the page ----------------------------------------------------------------------------------

_CSS = """
:root{color-scheme:light;--fg:#1c2833;--muted:#5d6d7e;--line:#d5d8dc;--open:#c0392b;
--clear:#2471a3;--opened:#1e8449;--cleared:#7d3c98;--signal:#1b2631;--missed:#c0392b}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;
color:var(--fg);background:#fbfcfc}
main{max-width:1320px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2em 0 .4em}h2{font-size:1.2rem;margin:1.6em 0 .5em;
border-bottom:1px solid var(--line);padding-bottom:.2em}
p,li{overflow-wrap:anywhere}.muted{color:var(--muted)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9rem;margin:.4em 0}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{overflow-wrap:anywhere;min-width:12em}
tr.best td{background:#eafaf1}
.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em;overflow-wrap:anywhere}
.grid-plots{display:grid;gap:14px;
grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr))}
figure{margin:0;padding:8px;background:#fff;border:1px solid var(--line);border-radius:6px;
min-width:0}
figure.missed{border-color:var(--missed);border-width:2px}
figcaption{font-size:.85rem;margin-top:4px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 6px;border-radius:4px;font-size:.78rem;font-weight:700;
color:#fff;background:var(--opened)}.badge.missed{background:var(--missed)}
.badge.unscored{background:#7f8c8d}span.missed{color:var(--missed);font-weight:600}
span.badge.missed{color:#fff}
svg.plot{display:block;width:100%;height:auto;max-width:100%}
.chart{max-width:860px;overflow-x:auto}.plotwrap{overflow-x:auto}
@media (max-width:600px){svg.plot{min-width:500px}}
td .id{white-space:nowrap}
svg text.tick,svg text.th-label,svg text.mark-label,svg text.bandlabel,svg text.missed-label,
svg text.recommended-label{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg .area{fill:#fff;stroke:#aab7b8}svg .grid{stroke:#eaeded;stroke-width:1}
svg text{font-family:system-ui,sans-serif;fill:var(--fg)}
svg .tick{font-size:12.5px;fill:var(--muted)}svg .axis{font-size:13.5px}
svg .band{fill:#f9e79f;fill-opacity:.45}svg .bandlabel{font-size:11.5px;fill:#9a7d0a}
svg .signal{fill:none;stroke:var(--signal);stroke-width:1.6;stroke-linejoin:round}
svg .reading{fill:var(--signal)}
svg .th-open{stroke:var(--open);stroke-width:1.5;stroke-dasharray:7 4}
svg .th-clear{stroke:var(--clear);stroke-width:1.5;stroke-dasharray:2 3}
svg .th-label{font-size:12px;font-weight:600}svg .th-open-label{fill:var(--open)}
svg .th-clear-label{fill:var(--clear)}
svg .mark-opened{stroke:var(--opened);stroke-width:2}
svg .mark-began{stroke:var(--opened);stroke-width:1;stroke-dasharray:1 3}
svg .mark-cleared{stroke:var(--cleared);stroke-width:2;stroke-dasharray:6 3}
svg .mark-label{font-size:12px;font-weight:600}svg .opened-label{fill:var(--opened)}
svg .cleared-label{fill:var(--cleared)}
svg .missed-label{font-size:22px;font-weight:800;fill:var(--missed)}
svg .nodata{font-size:13px;fill:var(--muted)}
svg .bar{fill:#5499c7}svg .rug{stroke:var(--fg);stroke-width:1}
svg .dot{fill:#2e86c1;fill-opacity:.55}svg .median{stroke:var(--open);stroke-width:2}
svg .curve-recall{fill:none;stroke:#2471a3;stroke-width:2}svg .pt-recall{fill:#2471a3}
svg .curve-alarms{fill:none;stroke:#ca6f1e;stroke-width:2;stroke-dasharray:6 3}
svg .pt-alarms{fill:#ca6f1e}svg .fa-tick{fill:#ca6f1e}svg .fa-axis{fill:#ca6f1e}
svg .recommended{stroke:var(--opened);stroke-width:2;stroke-dasharray:4 3}
svg .recommended-label{font-size:12px;font-weight:700;fill:var(--opened)}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:.85rem;margin:.3em 0 .8em}
.legend i{display:inline-block;width:22px;height:0;border-top:2px solid;vertical-align:middle;
margin-right:5px}
details{margin:.3em 0}summary{cursor:pointer}
"""


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], *, best: int | None = None) -> str:
    """A table of already escaped cells; a cell starting with ``\\x00n`` is numeric,
    ``\\x00w`` a long text that may wrap."""
    out = ['<div class="scroll"><table><thead><tr>']
    out.extend(f"<th>{_e(h)}</th>" for h in head)
    out.append("</tr></thead><tbody>")
    for index, row in enumerate(rows):
        out.append('<tr class="best">' if index == best else "<tr>")
        for cell in row:
            if cell.startswith("\x00n"):
                out.append(f'<td class="n">{cell[2:]}</td>')
            elif cell.startswith("\x00w"):
                out.append(f'<td class="wrap">{cell[2:]}</td>')
            else:
                out.append(f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _n(text: object) -> str:
    return "\x00n" + _e(text)


def _w(text: object) -> str:
    return "\x00w" + _e(text)


def _names(variants: Sequence[ReportVariant], sweep_name: str | None) -> list[str]:
    if sweep_name is None:
        return [v.label for v in variants]
    return [v.label if v.value is None else f"{v.value:g}" for v in variants]


def _summary(
    variants: Sequence[ReportVariant],
    names: Sequence[str],
    sweep_name: str | None,
    recommended: int | None,
) -> str:
    rows = []
    for index, (variant, name) in enumerate(zip(variants, names, strict=True)):
        score = variant.score
        mark = " ◀ recommended" if index == recommended else ""
        rows.append(
            [
                _e(name + mark),
                _n(f"{_percent(score.recall)} ({score.detected}/{score.incidents})"),
                _n(score.false_alarms),
                _n(f"{score.false_alarms_per_1000_sensor_days:.2f}"),
                _n(_seconds(score.delay_percentile(50))),
                _n(_seconds(score.delay_percentile(95))),
                _n(sum(k.duplicates for k in score.kinds)),
                _w(", ".join(score.missed) or "-"),
            ]
        )
    head = [
        sweep_name or "rules",
        "recall",
        "false alarms",
        "per 1,000 sensor-days",
        "delay p50 (s)",
        "delay p95 (s)",
        "duplicates",
        "missed",
    ]
    return _table(head, rows, best=recommended)


def _kinds(variant: ReportVariant) -> str:
    rows = []
    for kind in variant.score.kinds:
        rows.append(
            [
                _e(kind.kind),
                _n(kind.incidents),
                _e(kind.rule or "—"),
                _n(f"{_percent(kind.recall)} ({kind.detected}/{kind.incidents})"),
                _n(_seconds(kind.delay_percentile(50))),
                _n(_seconds(kind.delay_percentile(95))),
                _n(kind.duplicates),
                _n(kind.wrong_class),
                _n(kind.wrong_severity),
                _n(kind.emergency_cases),
            ]
        )
    head = [
        "incident kind",
        "incidents",
        "rule(s)",
        "recall",
        "delay p50 (s)",
        "delay p95 (s)",
        "duplicates",
        "wrong class",
        "wrong severity",
        "emergency on maintenance",
    ]
    return _table(head, rows)


def _incident_rows(plans: Sequence[_Plan]) -> str:
    rows = []
    for index, plan in enumerate(plans[:MAX_ROWS]):
        incident, case = plan.incident, plan.case
        delay = (
            _seconds((case.opened_at - incident.start).total_seconds())
            if case is not None and plan.status == "caught"
            else "—"
        )
        status = f'<span class="{plan.status}">{_e(plan.status)}</span>'
        rows.append(
            [
                f'<a href="#inc-{_e(_anchor(incident.id))}">{_e(incident.id)}</a>'
                if index < MAX_PLOTS
                else _e(incident.id),
                _e(incident.kind),
                f'<span class="id">{_e(incident.sensor_id)}</span>',
                _e(_when(incident.start)),
                status,
                _n(delay),
                _e(case.rule_id if case is not None else "—"),
            ]
        )
    head = ["incident", "kind", "sensor", "began", "status", "delay (s)", "case rule"]
    return _table(head, rows)


def _chart(svg: str) -> str:
    return f'<div class="chart">{svg}</div>'


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _false_cases(variant: ReportVariant) -> str:
    cases = variant.score.unexpected
    if not cases:
        return "<p>No false case: every case matched a labelled incident.</p>"
    rows = [
        [
            f'<span class="id">{_e(c.sensor_id)}</span>',
            _e(c.rule_id),
            _e(c.severity or "urgent"),
            _e(_when(c.started_at)),
            _e(_when(c.opened_at)),
        ]
        for c in cases[:MAX_ROWS]
    ]
    more = (
        f'<p class="muted">The first {MAX_ROWS} of {len(cases)} are listed.</p>'
        if len(cases) > MAX_ROWS
        else ""
    )
    return _table(["sensor", "rule", "severity", "began", "opened"], rows) + more


def _missed_list(truth: GroundTruth, variant: ReportVariant) -> str:
    missed = set(variant.score.missed)
    incidents = [i for i in truth.incidents if i.id in missed]
    if not incidents:
        return "<p>No missed incident.</p>"
    items = "".join(
        f'<li><span class="missed">{_e(i.id)}</span> · {_e(i.kind)} · '
        f'<span class="id">{_e(i.sensor_id)}</span> · began {_e(_when(i.start))}</li>'
        for i in incidents[:MAX_ROWS]
    )
    return f"<ul>{items}</ul>"


def render_report(
    *,
    truth: GroundTruth,
    variants: Sequence[ReportVariant],
    signals: Mapping[Window, Points],
    recording: str,
    sweep_name: str | None = None,
    recommended: int | None = None,
) -> str:
    """The whole report as one HTML document (no external reference of any kind)."""
    if not variants:
        raise ValueError("a report needs at least one scored rule set")
    names = _names(variants, sweep_name)
    main = primary_index(variants, recommended)
    primary = variants[main]
    plans = _plans(truth, primary)
    several = len(variants) > 1
    shown_as = _e(f": {names[main]}" if several else "")
    if several and sweep_name is not None:
        shown_as = _e(f" at {sweep_name} = {names[main]}")
    title = f"Backtest report: {truth.scenario}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">recording <span class="id">{_e(recording)}</span> · scenario '
        f"{_e(truth.scenario)}, seed {_e(truth.seed)} · {_e(_when(truth.start))} to "
        f"{_e(_when(truth.end))} · {_e(truth.sensors)} sensors on {_e(truth.stations)} "
        f"stations, {_e(f'{truth.sensor_days:,.2f}')} sensor-days · "
        f"{_e(len(truth.incidents))} labelled incidents, {_e(len(truth.faults))} faults</p>",
        "<h2>Summary</h2>",
        "<p>Recall over the incidents of kinds an enabled rule watches; a false alarm is a "
        "case no incident explains (or an emergency case on a maintenance incident). Delay: "
        "event time from the incident's start to its case opening.</p>",
        _summary(variants, names, sweep_name, recommended if sweep_name else None),
    ]
    if sweep_name is not None:
        unit = _sweep_unit(sweep_name, primary.rules)
        out.append("<h2>Sweep</h2>")
        if recommended is None:
            out.append("<p>No value to recommend: no incident of a watched kind in the truth.</p>")
        else:
            out.append(
                f"<p>Recommended: <b>{_e(variants[recommended].label)}</b> (highest recall, "
                "then fewest false alarms, then the shortest median delay; the middle of "
                "equally good values).</p>"
            )
        out.append(_chart(_sweep_curve(variants, sweep_name, recommended, unit)))
    out.append(f"<h2>Per incident kind{shown_as}</h2>")
    out.append(_kinds(primary))
    out.append(f"<h2>Detection delays{shown_as}</h2>")
    delays = [d for k in primary.score.kinds for d in k.delays_s]
    out.append(_chart(_delay_histogram(delays, f"detection delays of {names[main]}")))
    if several:
        out.append("<h3>Every " + ("value" if sweep_name else "rule set") + "</h3>")
        out.append(
            '<p class="muted">One dot per caught incident; the red tick is the median.'
            + (
                f" The first {MAX_STRIP_ROWS} of {len(variants)} are shown."
                if len(variants) > MAX_STRIP_ROWS
                else ""
            )
            + "</p>"
        )
        out.append(_chart(_delay_strip(variants, names, "detection delays per rule set")))
    out.append(f"<h2>Missed incidents and false cases{shown_as}</h2>")
    out.append("<h3>Missed</h3>" + _missed_list(truth, primary))
    out.append("<h3>False cases</h3>" + _false_cases(primary))
    if several:
        for index, (variant, name) in enumerate(zip(variants, names, strict=True)):
            if index == main:
                continue
            out.append(
                f"<details><summary>{_e(name)}: {len(variant.score.missed)} missed, "
                f"{variant.score.false_alarms} false alarms</summary>"
                f"{_missed_list(truth, variant)}{_false_cases(variant)}</details>"
            )
    out.append(f"<h2>Incidents{shown_as}</h2>")
    if not plans:
        out.append("<p>The truth file labels no incident.</p>")
    else:
        out.append(_incident_rows(plans))
        if len(plans) > MAX_ROWS:
            out.append(f'<p class="muted">The first {MAX_ROWS} of {len(plans)} are listed.</p>')
        plotted = plans[:MAX_PLOTS]
        note = (
            f"The first {MAX_PLOTS} of {len(plans)} incidents are plotted (truth file order)."
            if len(plans) > MAX_PLOTS
            else f"All {len(plans)} incident(s) are plotted."
        )
        out.append(
            f"<h2>Signals{shown_as}</h2><p>{_e(note)} Each plot shows the incident sensor's "
            "watched value as reported (a step: a sensor is in the state it last reported) "
            "against the rule's thresholds, in device time.</p>"
            '<div class="legend">'
            '<span><i style="border-color:var(--signal)"></i>reported value</span>'
            '<span><i style="border-color:var(--open);border-top-style:dashed"></i>'
            "open threshold</span>"
            '<span><i style="border-color:var(--clear);border-top-style:dotted"></i>'
            "clear threshold</span>"
            '<span><i style="border-color:var(--opened)"></i>case opened</span>'
            '<span><i style="border-color:var(--opened);border-top-style:dotted"></i>'
            "condition began</span>"
            '<span><i style="border-color:var(--cleared);border-top-style:dashed"></i>'
            "case cleared</span>"
            '<span><i style="border-color:#f4d03f;border-top-width:8px"></i>incident</span>'
            "</div>"
        )
        out.append('<div class="grid-plots">')
        for plan in plotted:
            anchor = _anchor(plan.incident.id)
            css = ' class="missed"' if plan.status == "missed" else ""
            if plan.window is None:
                graphic = f'<p class="muted">{_e(plan.note)}: nothing to plot.</p>'
            else:
                graphic = _incident_plot(
                    plan,
                    signals.get(plan.window, ()),
                    f"{plan.incident.id}: {plan.field} of {plan.incident.sensor_id}",
                )
            out.append(
                f'<figure id="inc-{_e(anchor)}"{css}><div class="plotwrap">{graphic}</div>'
                f"<figcaption>{_incident_caption(plan)}</figcaption></figure>"
            )
        out.append("</div>")
    out.append(
        '<p class="muted">Written by citysense backtest --report: self-contained, no network.'
        "</p></main></body></html>\n"
    )
    return "\n".join(out)


def build_report(
    recording: Path,
    truth: GroundTruth,
    variants: Sequence[ReportVariant],
    *,
    sweep_name: str | None = None,
    recommended: int | None = None,
) -> str:
    """Read the plotted signals from ``recording`` and render the report."""
    primary = variants[primary_index(variants, recommended)] if variants else None
    windows = plot_windows(truth, primary) if primary is not None else []
    return render_report(
        truth=truth,
        variants=variants,
        signals=gather_signals(recording, windows),
        recording=recording.name,
        sweep_name=sweep_name,
        recommended=recommended,
    )


def write_report(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it, then a rename."""
    handle, scratch = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or Path(".")
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
