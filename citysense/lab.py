"""The test lab held to what its scenarios say they show.

Each scenario file states its expected outcome (``expect:``, see ``simulator.scenario``). Running
one simulates it into a throw-away directory, backtests the recording through ingest, the rules
and a case store, scores the cases against the ground truth and checks every expectation; a
failed one becomes a one-line reason. ``citysense lab run scenarios/`` runs the whole library.

Recall here counts every incident of the scenario, emergencies and maintenance alike: an incident
whose value no enabled rule watches is missed (``simulator.score`` leaves such kinds out of its
recall, which would let a rule set that drops a rule pass).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from citysense.backtest import BacktestResult, backtest
from rules import RuleSet
from simulator.run import run_scenario
from simulator.scenario import (
    CounterBound,
    Expectation,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_metric_sample,
)
from simulator.score import WATCHED_VALUE, Score, ScoredCase, score

FALSE_CASES_SHOWN = 3
"""False cases named in a reason; the rest are counted."""


class LabError(ValueError):
    """Nothing to run: a path that does not exist, or a directory without scenarios."""


@dataclass(frozen=True, slots=True)
class CounterCheck:
    sample: str
    bound: CounterBound
    value: float | None
    """What the registry reads; None when it has no such sample."""

    @property
    def ok(self) -> bool:
        return self.value is not None and self.bound.holds(self.value)

    def reason(self) -> str:
        if self.value is None:
            return f"counter {self.sample}: no such metric sample after the backtest"
        return f"counter {self.sample} = {self.value:g}, expected {self.bound}"


@dataclass(frozen=True, slots=True)
class LabResult:
    """One scenario run and checked against its ``expect``."""

    path: Path
    scenario: str
    expect: Expectation
    incidents: int
    caught: int
    cases_ok: bool
    """Exactly one case of the right class and severity on every caught incident."""
    false_alarms: int
    delays_s: tuple[float, ...]
    counters: tuple[CounterCheck, ...]
    failures: tuple[str, ...]
    """Every expectation that did not hold, one line each."""
    seconds: float
    score: Score

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def recall(self) -> float | None:
        return self.caught / self.incidents if self.incidents else None

    @property
    def counters_ok(self) -> bool:
        return all(check.ok for check in self.counters)

    def delay_percentile(self, q: float) -> float | None:
        return _percentile(self.delays_s, q)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "scenario": self.scenario,
            "passed": self.passed,
            "failures": list(self.failures),
            "incidents": self.incidents,
            "caught": self.caught,
            "recall": self.recall,
            "cases_per_incident_ok": self.cases_ok,
            "false_alarms": self.false_alarms,
            "delay_p50_s": self.delay_percentile(50),
            "delay_max_s": max(self.delays_s, default=None),
            "counters": [
                {"sample": c.sample, "expected": str(c.bound), "value": c.value, "ok": c.ok}
                for c in self.counters
            ],
            "expect": self.expect.model_dump(mode="json"),
            "seconds": round(self.seconds, 2),
        }


def scenario_files(paths: Sequence[Path]) -> list[Path]:
    """The scenario files to run: each path a file, or a directory of ``*.yaml`` (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(path.glob("*.yaml"))
            if not files:
                raise LabError(f"no scenarios (*.yaml) in {path}")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise LabError(f"no such file or directory: {path}")
    if not found:
        raise LabError("no scenarios given")
    return found


def load_library(files: Sequence[Path]) -> list[tuple[Path, Scenario]]:
    """Every file loaded and checked before any runs: a ``ScenarioError`` names the first one
    that cannot be."""
    return [(path, load_scenario(path)) for path in files]


async def run_one(path: Path, scenario: Scenario, rules: RuleSet) -> LabResult:
    """Simulate ``scenario`` (loaded from ``path``), backtest it with ``rules``, score it and
    check its ``expect``; ``ScenarioError`` when the scenario cannot be simulated."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="citysense-lab-") as scratch:
        try:
            run = run_scenario(scenario, Path(scratch))
        except (KeyError, ValueError) as exc:  # a sensor the city lacks, a bad parameter
            raise ScenarioError(f"{path}: cannot run: {exc}") from None
        result = await backtest(run.recording, rules)
    scored = score(run.truth, map(ScoredCase.from_api, result.cases), rules)
    return check(path, scenario.expect, scored, result, time.perf_counter() - began)


async def run_file(path: Path, rules: RuleSet) -> LabResult:
    """One scenario file: load it (``ScenarioError`` if it cannot be) and run it."""
    return await run_one(path, load_scenario(path), rules)


def check(
    path: Path, expect: Expectation, scored: Score, result: BacktestResult, seconds: float = 0.0
) -> LabResult:
    """Hold a scored backtest to ``expect``."""
    failures: list[str] = []
    incidents = sum(k.incidents for k in scored.kinds)
    caught = sum(k.detected for k in scored.kinds)
    if incidents and caught / incidents < expect.recall - 1e-9:
        missed = [name for k in scored.kinds for name in k.missed]
        unwatched = [
            f"no enabled rule watches {'.'.join(WATCHED_VALUE[k.kind])}"
            for k in scored.kinds
            if k.rule is None
        ]
        failures.append(
            f"recall {caught / incidents:.0%} ({caught}/{incidents}) below "
            f"{expect.recall:.0%}: missed {', '.join(missed)}"
            + (f" ({'; '.join(unwatched)})" if unwatched else "")
        )
    cases_ok = True
    for kind in scored.kinds:
        for count, what in (
            (kind.duplicates, "duplicate case(s)"),
            (kind.wrong_class, "case(s) of the wrong class"),
            (kind.wrong_severity, "case(s) of the wrong severity"),
        ):
            if count:
                cases_ok = False
                failures.append(
                    f"{kind.kind}: {count} {what}, expected {expect.cases_per_incident} "
                    "case per incident"
                )
    if scored.false_alarms > expect.max_false_alarms:
        failures.append(_false_alarms(scored, expect.max_false_alarms))
    delays = tuple(d for k in scored.kinds for d in k.delays_s)
    if expect.max_delay_s is not None:
        for kind in scored.kinds:
            late = [d for d in kind.delays_s if d > expect.max_delay_s]
            if late:
                failures.append(
                    f"{kind.kind}: delay {max(late):g} s above {expect.max_delay_s:g} s "
                    f"({len(late)} of {len(kind.delays_s)} caught)"
                )
    counters = tuple(
        CounterCheck(sample, bound, sample_value(result.metrics.registry, sample))
        for sample, bound in expect.counters.items()
    )
    failures.extend(c.reason() for c in counters if not c.ok)
    return LabResult(
        path=path,
        scenario=scored.scenario,
        expect=expect,
        incidents=incidents,
        caught=caught,
        cases_ok=cases_ok,
        false_alarms=scored.false_alarms,
        delays_s=delays,
        counters=counters,
        failures=tuple(failures),
        seconds=seconds,
        score=scored,
    )


def _false_alarms(scored: Score, allowed: int) -> str:
    named = [
        f"{c.rule_id} on {c.sensor_id} at {c.started_at:%H:%M:%S}"
        for c in scored.unexpected[:FALSE_CASES_SHOWN]
    ]
    more = len(scored.unexpected) - len(named)
    if more:
        named.append(f"{more} more")
    emergency = sum(k.emergency_cases for k in scored.kinds)
    if emergency:
        named.append(f"{emergency} emergency case(s) on maintenance incidents")
    return f"{scored.false_alarms} false alarm(s), at most {allowed}: {'; '.join(named)}"


def sample_value(registry: CollectorRegistry, sample: str) -> float | None:
    """A sample's value, as ``registry.get_sample_value`` reads it; 0 for a labelled counter
    that never counted (it has no sample until it does); None when the registry has no such
    sample (an unknown name, or labels that name does not carry)."""
    name, labels = parse_metric_sample(sample)
    value = registry.get_sample_value(name, labels)
    if value is not None or not labels:
        return value
    for family in registry.collect():
        if family.type != "counter" or name != f"{family.name}_total":
            continue
        carried = {frozenset(s.labels) for s in family.samples if s.name == name}
        return 0.0 if not carried or frozenset(labels) in carried else None
    return None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None
