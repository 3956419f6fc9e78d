"""A small driver for the engine: rules from YAML text, readings at offsets from T0, one batch
per call with the edge's ``sent_at``, transitions as short tuples."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from protocol import Reading, SensorKind
from rules import Alert, ClockPolicy, RuleEngine, parse_rules
from rules.groups import Locate
from tests.factories import T0

Short = tuple[str, str, float, float]
"""(state, first sensor, started_at offset s, at offset s)."""


def rules_yaml(*bodies: str) -> str:
    return "rules:\n" + "".join(f"  - {body}\n" for body in bodies)


def rule(body: str, *, kind: str = "cover", extra: str = "") -> str:
    """One rule's YAML mapping with an id, title and case filled in."""
    return (
        f"{{id: r, title: t, kind: {kind}, case: {{category: component}}, {body}"
        f"{', ' + extra if extra else ''}}}"
    )


def at(
    seconds: float,
    value: float | None = None,
    sensor: str = "c1",
    *,
    kind: str = "cover",
    field: str = "tilt_deg",
    **values: float,
) -> Reading:
    data = dict(values)
    if value is not None:
        data[field] = value
    return Reading(
        sensor_id=sensor, kind=SensorKind(kind), ts=T0 + timedelta(seconds=seconds), values=data
    )


def short(alerts: Iterable[Alert]) -> list[Short]:
    return [
        (
            a.state,
            a.sensor_id,
            (a.started_at - T0).total_seconds(),
            (a.at - T0).total_seconds(),
        )
        for a in alerts
    ]


class Feed:
    """Feeds an engine like a live station would: each call is one batch sent at ``sent``."""

    def __init__(
        self,
        text: str,
        *,
        locate: Locate | None = None,
        lateness: float = 0.0,
        engine: RuleEngine | None = None,
    ) -> None:
        self.rules = parse_rules(text, "test.yaml")
        self.engine = engine or RuleEngine(
            self.rules, locate=locate, clock=ClockPolicy(allowed_lateness=lateness)
        )
        self.alerts: list[Alert] = []

    def send(
        self, *readings: Reading, sent: float | None = None, station: str = "st-1"
    ) -> list[Short]:
        sent_at = T0 + timedelta(seconds=sent) if sent is not None else max(r.ts for r in readings)
        out = self.engine.process(station, readings, sent_at)
        self.alerts += out
        return short(out)

    def each(self, readings: Iterable[Reading], station: str = "st-1") -> list[Short]:
        """Every reading in a batch of its own, sent when it was taken."""
        out: list[Short] = []
        for reading in readings:
            out += self.send(reading, station=station)
        return out

    def series(
        self,
        values: Iterable[float | None],
        *,
        start: float = 0.0,
        step: float = 1.0,
        sensor: str = "c1",
        kind: str = "cover",
        field: str = "tilt_deg",
    ) -> list[Short]:
        readings = [
            at(start + i * step, v, sensor, kind=kind, field=field)
            for i, v in enumerate(values)
            if v is not None
        ]
        return self.each(readings)
