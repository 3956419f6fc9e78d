"""Scenario files: a city, a time span, labelled incidents and injected faults (YAML).

A scenario is data, checked when loaded; every mistake is reported with where and why::

    name: cover-open
    seed: 7
    start: 2026-07-01T08:00:00+08:00
    duration: 30m
    city: {districts: ["410105"], stations_per_district: 2}
    incidents:
      - {kind: cover_open, sensor: random, start: 5m, duration: 10m}
    faults:
      - {kind: station_offline, station: st-410105-001, start: 12m, duration: 5m}

Durations are seconds (a number) or ``<n>s|m|h|d``; ``start`` of an incident or fault is an
offset from the scenario's start. ``sensor: random`` / ``station: random`` pick a target from
the seed, among sensors of the kind the incident needs.

The city section also says how hard the street is (defaults: an ordinary street, 15 % loose
covers, breezy wind, a real-time day)::

    city: {loose_covers: 0.15, wind: gusty, day_length: 2h, reporting: {cover: exception}}

``loose_covers``: share of covers rocked by streams of vehicles; ``wind``: calm | breezy |
gusty; ``day_length``: the daily cycles (demand peaks, rush hours) run in this time;
``reporting``: per sensor kind, ``periodic`` (every second while an alarm lasts) or
``exception`` (on raise and recovery only), plus the heartbeat either way.

``expect`` states the outcome the scenario is meant to show, which ``citysense lab run`` checks
after simulating, backtesting and scoring it (all optional; the defaults ask for every incident
caught once, no false alarm)::

    expect:
      recall: 1.0                 # share of the incidents caught by a right case
      cases_per_incident: 1       # exactly one case per caught incident
      max_false_alarms: 0
      max_delay_s: 25             # event time, incident start to case opening, every incident
      counters:                   # metric samples after the backtest: min / max / equals
        'citysense_rules_readings_total{outcome="clock_reset_flagged"}': {min: 1}
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400}


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with where and why."""


def _duration(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"duration {value!r} is not a number of seconds or <n>s|m|h|d")
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Offset = Annotated[timedelta, BeforeValidator(_duration), Field(ge=timedelta(0))]
Positive = Annotated[timedelta, BeforeValidator(_duration), Field(gt=timedelta(0))]

SensorKindName = Literal["cover", "pressure", "pole"]
ReportingMode = Literal["periodic", "exception"]
IncidentKind = Literal[
    "cover_open", "pressure_burst", "pole_fall", "pole_creep", "flooding", "gas_leak"
]
FaultKind = Literal[
    "station_offline",
    "garbage",
    "duplicate",
    "out_of_order",
    "clock_skew",
    "clock_reset",
    "stuck_sensor",
    "low_battery",
    "broker_drop",
]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CitySpec(_Strict):
    districts: list[Annotated[str, Field(pattern=r"^4101\d\d$")]] = ["410105"]
    stations_per_district: int = Field(default=2, ge=1, le=10_000)
    covers_per_station: int = Field(default=3, ge=0, le=1000)
    pressure_per_station: int = Field(default=1, ge=0, le=1000)
    poles_per_station: int = Field(default=1, ge=0, le=1000)
    loose_covers: float = Field(
        default=0.15, ge=0.0, le=1.0, description="Share of covers rocked by streams of vehicles."
    )
    wind: Literal["calm", "breezy", "gusty"] = "breezy"
    day_length: Positive = Field(
        default=timedelta(days=1), le=timedelta(days=1), description="A compressed day."
    )
    reporting: dict[SensorKindName, ReportingMode] = Field(
        default_factory=dict, description="Per sensor kind: periodic or exception."
    )


class EdgeSpec(_Strict):
    batch_interval: Positive = timedelta(seconds=5)
    max_batch: int = Field(default=500, ge=1, le=1000)
    tick: Positive = Field(default=timedelta(seconds=1), description="Simulation time step.")


class IncidentSpec(_Strict):
    kind: IncidentKind
    sensor: str = Field(default="random", description="A sensor id, or random.")
    start: Offset
    duration: Positive
    params: dict[str, float] = Field(default_factory=dict)


class FaultSpec(_Strict):
    kind: FaultKind
    station: str | None = Field(default=None, description="Station id or random.")
    sensor: str | None = Field(default=None, description="Sensor id or random.")
    start: Offset
    duration: Positive | None = None
    count: int = Field(default=1, ge=1, le=100_000, description="garbage: payloads sent.")
    probability: float = Field(
        default=1.0, gt=0, le=1, description="duplicate: share resent; broker_drop: share dropped."
    )
    offset: Duration = Field(default=timedelta(0), description="clock_skew: device clock error.")
    battery_v: float = Field(default=3.1, gt=0, lt=5, description="low_battery: voltage.")

    @model_validator(mode="after")
    def _target(self) -> FaultSpec:
        per_sensor = self.kind in ("stuck_sensor", "low_battery")
        if per_sensor and self.sensor is None:
            raise ValueError(f"{self.kind} needs a sensor (an id or random)")
        if not per_sensor and self.station is None:
            raise ValueError(f"{self.kind} needs a station (an id or random)")
        windowed = ("station_offline", "duplicate", "out_of_order", "stuck_sensor", "broker_drop")
        if self.kind in windowed and self.duration is None:
            raise ValueError(f"{self.kind} needs a duration")
        if self.kind == "clock_skew" and not self.offset:
            raise ValueError("clock_skew needs a non-zero offset")
        return self


_METRIC_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"\\]*)"\s*(?:,|$)')


def parse_metric_sample(key: str) -> tuple[str, dict[str, str]]:
    """``name`` or ``name{label="value",...}`` (as Prometheus prints a sample) into the name
    and its labels."""
    match = _METRIC_SAMPLE.match(key.strip())
    if match is None:
        raise ValueError(f'{key!r} is not a metric sample: name or name{{label="value",...}}')
    name, inside = match[1], (match[2] or "").strip()
    labels: dict[str, str] = {}
    position = 0
    while position < len(inside):
        label = _LABEL.match(inside, position)
        if label is None or label.end() == position:
            raise ValueError(f'{key!r}: labels are written {{label="value",...}}')
        if label[1] in labels:
            raise ValueError(f"{key!r}: label {label[1]!r} given twice")
        labels[label[1]] = label[2]
        position = label.end()
    return name, labels


def _metric_sample(key: str) -> str:
    parse_metric_sample(key)
    return key.strip()


MetricSample = Annotated[str, AfterValidator(_metric_sample)]


class CounterBound(_Strict):
    """What a metric sample must read after the backtest: at least, at most, or exactly."""

    min: float | None = Field(default=None, description="At least this.")
    max: float | None = Field(default=None, description="At most this.")
    equals: float | None = Field(default=None, description="Exactly this (alone).")

    @model_validator(mode="after")
    def _one_bound(self) -> CounterBound:
        given = [v for v in (self.min, self.max, self.equals) if v is not None]
        if not given:
            raise ValueError("give min, max or equals")
        if any(not math.isfinite(v) for v in given):
            raise ValueError("bounds are finite numbers")
        if self.equals is not None and len(given) > 1:
            raise ValueError("equals stands alone (not with min or max)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self

    def holds(self, value: float) -> bool:
        if self.equals is not None:
            return value == self.equals
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.equals is not None:
            return f"= {self.equals:g}"
        if self.min is not None and self.max is not None:
            return f"{self.min:g}..{self.max:g}"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class Expectation(_Strict):
    """The outcome a scenario is meant to show on the default rules (``citysense lab run``)."""

    recall: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Share of the scenario's incidents (emergencies and maintenance alike) that "
        "a case of the right class and severity caught; an incident whose value no enabled rule "
        "watches counts as missed.",
    )
    cases_per_incident: Literal[1] = Field(
        default=1,
        description="Exactly one case per caught incident: a second case of the right class on "
        "it (a duplicate), or one of the wrong class or severity, fails.",
    )
    max_false_alarms: int = Field(
        default=0,
        ge=0,
        description="Cases no incident explains, plus critical or urgent cases on a "
        "maintenance incident.",
    )
    max_delay_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds of event time from each caught incident's start to its case "
        "opening, for every incident (none: not checked).",
    )
    counters: dict[MetricSample, CounterBound] = Field(
        default_factory=dict,
        description='Ingest and rules metric samples after the backtest, name{label="value"} '
        "as /metrics shows them, each with a bound; a sample the registry does not have fails.",
    )


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    seed: int = Field(ge=0)
    start: AwareDatetime
    duration: Positive
    city: CitySpec = CitySpec()
    edge: EdgeSpec = EdgeSpec()
    incidents: list[IncidentSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    expect: Expectation = Field(
        default_factory=Expectation, description="The outcome the scenario is meant to show."
    )

    @model_validator(mode="after")
    def _inside(self) -> Scenario:
        starts = [("incidents", i, item.start) for i, item in enumerate(self.incidents)]
        starts += [("faults", i, item.start) for i, item in enumerate(self.faults)]
        for where, index, start in starts:
            if start >= self.duration:
                raise ValueError(f"{where}[{index}] starts after the scenario ends")
        return self


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    try:
        return Scenario.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'scenario'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScenarioError(f"{source}: {problems}") from None


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(
            f"{path} is not a scenario: not UTF-8 text (a scenario is YAML; a recording?)"
        ) from None
    return parse_scenario(text, str(path))
