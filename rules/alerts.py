"""What the rules engine emits: alert transitions, in event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from protocol import SensorKind

AlertState = Literal["open", "cleared"]
Severity = Literal["critical", "urgent", "warning"]


@dataclass(frozen=True, slots=True)
class CaseTarget:
    """The GB/T 30428 class a rule's alerts become cases of.

    ``category="component"`` with ``code=None`` means "the class of the watched asset"
    (a cover sensor on a storm-water cover opens a 0103 case).
    """

    category: Literal["component", "event"]
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Alert:
    """One transition of one rule on one sensor.

    ``started_at`` is the event time the condition began (first reading past the open
    threshold) and identifies the alert: (rule_id, sensor_id, started_at) is unique.
    ``at`` is the event time of this transition (open: when the condition had held for the
    rule's sustain time; cleared: first reading at or below the clear threshold).
    """

    rule_id: str
    title: str
    state: AlertState
    severity: Severity
    station_id: str
    sensor_id: str
    kind: SensorKind
    field: str
    value: float
    threshold: float
    started_at: datetime
    at: datetime
    target: CaseTarget
    evidence: tuple[Evidence, ...] = ()

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.rule_id, self.sensor_id, self.started_at)
