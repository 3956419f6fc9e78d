"""The rule engine: pure and deterministic, evaluated in event time.

``RuleEngine.process(station_id, readings)`` feeds readings (stamped by the devices' clocks) to
every enabled rule and returns the alert transitions they cause. Nothing here reads a clock or
does I/O, so the same readings give the same alerts whether they arrive live, replayed at ×100,
or from a backtest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protocol import Reading
from rules.alerts import Alert, Evidence
from rules.schema import RuleSet, ThresholdRule

EVIDENCE_LIMIT = 20


@dataclass(slots=True)
class SensorRuleState:
    """What one rule remembers about one sensor."""

    last_ts: datetime | None = None
    pending_since: datetime | None = None
    evidence: deque[Evidence] = field(default_factory=lambda: deque(maxlen=EVIDENCE_LIMIT))
    open_alert: Alert | None = None


@dataclass(slots=True)
class EngineStats:
    readings_evaluated: int = 0
    out_of_order: int = 0
    """Readings older than one already evaluated for the same sensor and rule: skipped."""
    missing_field: int = 0
    """Readings of a rule's kind that lack the rule's value: skipped."""


class RuleEngine:
    def __init__(self, rules: RuleSet) -> None:
        self._by_kind: dict[str, list[ThresholdRule]] = {}
        for rule in rules.rules:
            if rule.enabled:
                self._by_kind.setdefault(rule.kind.value, []).append(rule)
        self._state: dict[tuple[str, str], SensorRuleState] = {}
        self.stats = EngineStats()

    def open_alerts(self) -> list[Alert]:
        return [s.open_alert for s in self._state.values() if s.open_alert is not None]

    def process(self, station_id: str, readings: Iterable[Reading]) -> list[Alert]:
        alerts: list[Alert] = []
        for reading in sorted(readings, key=lambda r: r.ts):
            for rule in self._by_kind.get(reading.kind.value, ()):
                alert = self._step(rule, station_id, reading)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _step(self, rule: ThresholdRule, station_id: str, reading: Reading) -> Alert | None:
        value = reading.values.get(rule.field)
        if value is None:
            self.stats.missing_field += 1
            return None
        state = self._state.setdefault((rule.id, reading.sensor_id), SensorRuleState())
        if state.last_ts is not None and reading.ts <= state.last_ts:
            self.stats.out_of_order += 1
            return None
        state.last_ts = reading.ts
        self.stats.readings_evaluated += 1

        if value > rule.open_above:
            if state.pending_since is None:
                state.pending_since = reading.ts
                state.evidence.clear()
            state.evidence.append(Evidence(reading.ts, value))
            held = reading.ts - state.pending_since
            if state.open_alert is None and held >= timedelta(seconds=rule.sustain_s):
                state.open_alert = _alert(rule, station_id, reading, value, state, "open")
                return state.open_alert
            return None

        state.pending_since = None
        if value <= rule.clear_below and state.open_alert is not None:
            opened = state.open_alert
            state.open_alert = None
            return _alert(
                rule, station_id, reading, value, state, "cleared", started_at=opened.started_at
            )
        return None


def _alert(
    rule: ThresholdRule,
    station_id: str,
    reading: Reading,
    value: float,
    state: SensorRuleState,
    transition: str,
    started_at: datetime | None = None,
) -> Alert:
    opening = transition == "open"
    start = state.pending_since if opening else started_at
    assert start is not None
    evidence: Sequence[Evidence] = (
        tuple(state.evidence) if opening else (Evidence(reading.ts, value),)
    )
    return Alert(
        rule_id=rule.id,
        title=rule.title,
        state="open" if opening else "cleared",
        severity=rule.severity,
        station_id=station_id,
        sensor_id=reading.sensor_id,
        kind=reading.kind,
        field=rule.field,
        value=value,
        threshold=rule.open_above if opening else rule.clear_below,
        started_at=start,
        at=reading.ts,
        target=rule.case.target(),
        evidence=tuple(evidence),
    )
