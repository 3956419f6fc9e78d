"""What the rules engine emits: alert transitions, in event time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from protocol import SensorKind

AlertState = Literal["open", "cleared", "member", "flapping"]
"""``open``: a new incident (a case opens). ``cleared``: it is over. ``member``: another sensor
joined an open incident (the case names it). ``flapping``: a condition that keeps coming and
going re-triggered; its last case is re-opened and marked instead of a new one opening."""
Severity = Literal["critical", "urgent", "warning", "maintenance"]
EMERGENCY: frozenset[str] = frozenset({"critical", "urgent"})
"""Severities the urgent-handling center dispatches at once; the others are for the owner."""


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
    """One transition of one incident of one rule.

    ``(rule_id, sensor_id, started_at)`` identifies the incident: ``sensor_id`` is its first
    sensor and ``started_at`` the event time its condition began there. ``at`` is the event time
    of this transition. ``members`` lists every sensor of the incident (first sensor first);
    ``member_id`` is the sensor a ``member`` transition adds. ``flags`` say what was unusual about
    the readings behind it (``clock_reset``, ``clock_skew``, ``late``, ``flapping``).
    ``rules_version`` is the version of the running rule set (ingest's rules control sets it;
    the engine, which knows no versions, leaves it None, as in a backtest).
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
    members: tuple[str, ...] = ()
    member_id: str | None = None
    flags: tuple[str, ...] = ()
    rules_version: int | None = None

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.rule_id, self.sensor_id, self.started_at)
