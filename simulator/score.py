"""Score a run: the ground truth against the cases the pipeline opened.

Per incident kind: recall, detection delay (event time from incident start to case opening,
p50/p95), duplicate cases, cases of the wrong class; overall: false alarms per 1,000
sensor-days. An incident kind that no enabled rule watches is reported as such, not as 0 %.

A case matches an incident when its sensor, or any of its ``members`` (one case for a burst
felt by neighbours names them all), is among the incident's sensors, and it started within
the incident's window (± ``MATCH_SLACK``). Maintenance incidents (pole creep) expect a
``maintenance`` case on the asset's class; a critical or urgent case on one is a false alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from rules import RuleSet
from simulator.truth import GroundTruth, LabelledIncident

# Which reading value an incident kind shows up in: a rule must watch it to catch the kind.
WATCHED_VALUE = {
    "cover_open": ("cover", "tilt_deg"),
    "flooding": ("cover", "water_level_m"),
    "gas_leak": ("cover", "gas_ppm"),
    "pressure_burst": ("pressure", "pressure_mpa"),
    "pole_fall": ("pole", "tilt_deg"),
    "pole_creep": ("pole", "tilt_deg"),
}
MATCH_SLACK = timedelta(seconds=60)
SEVERITIES = ("critical", "urgent", "warning", "maintenance")
EMERGENCY = ("critical", "urgent")


@dataclass(frozen=True, slots=True)
class ScoredCase:
    sensor_id: str
    rule_id: str
    category: str
    class_code: str
    started_at: datetime
    opened_at: datetime
    detected_at: datetime | None = None
    """When ingest saw it: the replayed publish time in a backtest, wall time when live."""
    severity: str | None = None
    """critical / urgent / warning / maintenance; None (older cases): taken as urgent."""
    members: tuple[str, ...] = ()
    """Every sensor the case names, primary first (a burst seen by its neighbours)."""

    @property
    def emergency(self) -> bool:
        return self.severity is None or self.severity in EMERGENCY

    @property
    def sensors(self) -> tuple[str, ...]:
        return (self.sensor_id, *self.members)

    @classmethod
    def from_api(cls, item: Mapping[str, Any] | Any) -> ScoredCase:
        """From a case as ``GET /api/v1/cases`` shows it (dict) or a ``CaseOut``; ``severity``
        and ``members`` are read when the case carries them."""

        def value(name: str) -> Any:
            return item[name] if isinstance(item, Mapping) else getattr(item, name)

        def optional(name: str) -> Any:
            if isinstance(item, Mapping):
                return item.get(name)
            return getattr(item, name, None)

        def time(name: str) -> datetime:
            raw = value(name)
            return raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)

        return cls(
            sensor_id=value("sensor_id"),
            rule_id=value("rule_id"),
            category=value("category"),
            class_code=value("class_code"),
            started_at=time("started_at"),
            opened_at=time("opened_at"),
            detected_at=time("detected_at"),
            severity=optional("severity"),
            members=tuple(str(m) for m in optional("members") or ()),
        )


@dataclass(frozen=True, slots=True)
class KindScore:
    kind: str
    incidents: int
    rule: str | None
    """The rule(s) watching this kind's value, or None when no rule exists yet."""
    emergency: bool
    """False for maintenance kinds, which must not open an emergency case (pole creep)."""
    detected: int = 0
    wrong_class: int = 0
    duplicates: int = 0
    wrong_severity: int = 0
    """Cases of the right class but the wrong kind of severity: maintenance on an emergency,
    warning on a maintenance incident."""
    emergency_cases: int = 0
    """Critical or urgent cases on maintenance incidents: false alarms."""
    delays_s: tuple[float, ...] = ()
    """Event time from incident start to the case opening (device clocks)."""
    latencies_s: tuple[float, ...] = ()
    """From incident start to ingest seeing it, outages included; only when ingest's clock
    is on the recording's timeline (a backtest), else empty."""
    missed: tuple[str, ...] = ()
    """Ids of the incidents no right case was opened for (the truth file names them)."""

    @property
    def recall(self) -> float | None:
        if self.rule is None or not self.incidents:
            return None
        return self.detected / self.incidents

    def delay_percentile(self, q: float) -> float | None:
        return float(np.percentile(self.delays_s, q)) if self.delays_s else None

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else None


@dataclass(frozen=True, slots=True)
class Score:
    scenario: str
    sensor_days: float
    cases: int
    kinds: tuple[KindScore, ...]
    false_alarms: int
    unexpected: tuple[ScoredCase, ...] = field(default=(), repr=False)

    @property
    def false_alarms_per_1000_sensor_days(self) -> float:
        return 1000 * self.false_alarms / self.sensor_days if self.sensor_days else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "cases": self.cases,
            "sensor_days": round(self.sensor_days, 3),
            "false_alarms": self.false_alarms,
            "false_alarms_per_1000_sensor_days": round(self.false_alarms_per_1000_sensor_days, 3),
            "kinds": [
                {
                    "kind": k.kind,
                    "incidents": k.incidents,
                    "rule": k.rule,
                    "status": _status(k),
                    "recall": k.recall,
                    "detected": k.detected,
                    "wrong_class": k.wrong_class,
                    "duplicates": k.duplicates,
                    "wrong_severity": k.wrong_severity,
                    "emergency_cases": k.emergency_cases,
                    "delay_p50_s": k.delay_percentile(50),
                    "delay_p95_s": k.delay_percentile(95),
                    "latency_p50_s": k.latency_percentile(50),
                    "latency_p95_s": k.latency_percentile(95),
                    "missed": list(k.missed),
                }
                for k in self.kinds
            ],
            "false_cases": [
                {
                    "sensor_id": c.sensor_id,
                    "rule_id": c.rule_id,
                    "severity": c.severity,
                    "started_at": c.started_at.isoformat(),
                }
                for c in self.unexpected
            ],
        }

    @property
    def incidents(self) -> int:
        """Incidents an emergency case should have caught (a rule watches their value)."""
        return sum(k.incidents for k in self.kinds if k.emergency and k.rule is not None)

    @property
    def detected(self) -> int:
        return sum(k.detected for k in self.kinds if k.emergency and k.rule is not None)

    @property
    def recall(self) -> float | None:
        """Over every scored emergency incident; None when there is none to catch."""
        return self.detected / self.incidents if self.incidents else None

    def delay_percentile(self, q: float) -> float | None:
        delays = [d for k in self.kinds for d in k.delays_s]
        return float(np.percentile(delays, q)) if delays else None

    @property
    def missed(self) -> tuple[str, ...]:
        """Incidents of watched kinds that no right case caught, by id."""
        return tuple(name for k in self.kinds if k.rule is not None for name in k.missed)


def split_by_arrival(
    cases: Iterable[ScoredCase], since: datetime
) -> tuple[list[ScoredCase], list[ScoredCase]]:
    """The cases ingest saw at or after ``since`` (a live run's start, wall clock) and the ones
    it saw before it: an earlier run's. A case without ``detected_at`` counts as arrived."""
    arrived: list[ScoredCase] = []
    earlier: list[ScoredCase] = []
    for case in cases:
        seen = case.detected_at
        (earlier if seen is not None and seen < since else arrived).append(case)
    return arrived, earlier


def _status(kind: KindScore) -> str:
    if kind.rule is None:
        sensor_kind, value = WATCHED_VALUE[kind.kind]
        return f"no rule watches {sensor_kind}.{value} yet"
    return "scored" if kind.emergency else "maintenance: no emergency case may open"


def _rules_for(rules: RuleSet, kind: str) -> str | None:
    sensor_kind, value = WATCHED_VALUE[kind]
    ids = [r.id for r in rules.rules if r.enabled and r.kind == sensor_kind and value in r.fields()]
    return ",".join(ids) or None


def _matches(case: ScoredCase, incident: LabelledIncident) -> bool:
    return (
        any(sensor in incident.sensors for sensor in case.sensors)
        and incident.start - MATCH_SLACK <= case.started_at <= incident.end + MATCH_SLACK
    )


def score(truth: GroundTruth, cases: Iterable[ScoredCase], rules: RuleSet) -> Score:
    all_cases = sorted(cases, key=lambda c: (c.opened_at, c.sensor_id))
    claimed: set[int] = set()
    kinds: dict[str, list[LabelledIncident]] = {}
    for incident in truth.incidents:
        kinds.setdefault(incident.kind, []).append(incident)
    results = []
    for kind, incidents in sorted(kinds.items()):
        results.append(_score_kind(kind, incidents, all_cases, claimed, rules, truth))
    unexpected = tuple(c for i, c in enumerate(all_cases) if i not in claimed)
    no_emergency = sum(k.emergency_cases for k in results)
    return Score(
        scenario=truth.scenario,
        sensor_days=truth.sensor_days,
        cases=len(all_cases),
        kinds=tuple(results),
        false_alarms=len(unexpected) + no_emergency,
        unexpected=unexpected,
    )


def _score_kind(
    kind: str,
    incidents: Sequence[LabelledIncident],
    cases: Sequence[ScoredCase],
    claimed: set[int],
    rules: RuleSet,
    truth: GroundTruth,
) -> KindScore:
    detected = wrong = duplicates = wrong_severity = emergency_cases = 0
    delays, latencies, missed = [], [], []
    timeline = (truth.start, truth.end + timedelta(days=1))
    emergency = not incidents[0].maintenance
    for incident in incidents:
        found = [i for i, c in enumerate(cases) if i not in claimed and _matches(c, incident)]
        claimed.update(found)
        hits = [cases[i] for i in found]
        if not emergency:
            alarms = [c for c in hits if c.emergency]
            emergency_cases += len(alarms)
            hits = [c for c in hits if not c.emergency]
        classed = [
            c
            for c in hits
            if (c.category, c.class_code) == (incident.expected_category, incident.expected_class)
        ]
        wrong += len(hits) - len(classed)
        right = [c for c in classed if (c.severity == "maintenance") != emergency]
        wrong_severity += len(classed) - len(right)
        if not right:
            missed.append(incident.id)
        else:
            detected += 1
            duplicates += len(right) - 1
            first = right[0]
            delays.append((first.opened_at - incident.start).total_seconds())
            seen = first.detected_at
            if seen is not None and timeline[0] <= seen <= timeline[1]:
                latencies.append((seen - incident.start).total_seconds())
    return KindScore(
        kind=kind,
        incidents=len(incidents),
        rule=_rules_for(rules, kind),
        emergency=emergency,
        detected=detected,
        wrong_class=wrong,
        duplicates=duplicates,
        wrong_severity=wrong_severity,
        emergency_cases=emergency_cases,
        delays_s=tuple(delays),
        latencies_s=tuple(latencies),
        missed=tuple(missed),
    )
