"""Tuning thresholds against recorded traffic: several rule sets side by side, one rule field
swept over a range, and gates a CI job can fail on.

Every variant is a full backtest (``citysense.backtest``: the live pipeline, a throw-away case
store) scored against the recording's ground truth (``simulator.score``). A sweep changes one
field of one rule in the rule file's own YAML and validates the result like any rule file: a
value the schema refuses stops the sweep, with the reason, before anything runs.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rules import RuleError, RuleSet, parse_rules
from simulator.score import Score
from simulator.truth import GroundTruth

MAX_SWEEP_VALUES = 200
_SWEEP = re.compile(r"^(?P<rule>[^.=\s]+)\.(?P<path>[^=\s]+)=(?P<range>\S+)$")


class TuningError(ValueError):
    """A sweep, gate or truth file that cannot be used, with why (one line)."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """``RULE.FIELD=START:STOP:STEP``: ``FIELD`` is a dotted path inside the rule
    (``when.above``, ``hold``, ``clear.when.below``, ``when.all.0.above``); STOP is included
    when the steps reach it."""

    rule_id: str
    path: tuple[str | int, ...]
    values: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"{self.rule_id}.{'.'.join(str(p) for p in self.path)}"


def parse_sweep(spec: str) -> Sweep:
    match = _SWEEP.match(spec.strip())
    if match is None:
        raise TuningError(
            f"{spec!r} is not RULE.FIELD=START:STOP:STEP (e.g. cover-open.hold=5:30:5)"
        )
    parts = match["range"].split(":")
    if len(parts) != 3:
        raise TuningError(f"{match['range']!r} is not START:STOP:STEP")
    try:
        start, stop, step = (float(part) for part in parts)
    except ValueError:
        raise TuningError(f"{match['range']!r}: START, STOP and STEP are numbers") from None
    if not all(math.isfinite(x) for x in (start, stop, step)) or step <= 0 or stop < start:
        raise TuningError(f"{match['range']!r}: need START <= STOP and STEP > 0")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_SWEEP_VALUES:
        raise TuningError(f"{match['range']!r} gives {count} values; at most {MAX_SWEEP_VALUES}")
    values = tuple(_tidy(start + k * step) for k in range(count))
    path = tuple(int(p) if p.isdigit() else p for p in match["path"].split("."))
    return Sweep(match["rule"], path, values)


def _tidy(value: float) -> float:
    """0.1 + 2 * 0.1 as 0.3: sweep values are shown and written into YAML."""
    return float(f"{value:.10g}")


def swept(text: str, source: str, sweep: Sweep, value: float) -> RuleSet:
    """The rule file ``text`` with ``sweep``'s field set to ``value``, validated."""
    document = yaml.safe_load(text)
    rules = document.get("rules") if isinstance(document, dict) else None
    rule = next(
        (r for r in rules or () if isinstance(r, dict) and r.get("id") == sweep.rule_id), None
    )
    if rule is None:
        raise TuningError(f"{source} has no rule {sweep.rule_id!r} to sweep")
    changed = copy.deepcopy(document)
    index = rules.index(rule)  # type: ignore[union-attr]
    target: Any = changed["rules"][index]
    for step in sweep.path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            raise TuningError(f"rule {sweep.rule_id!r} has no {sweep.name}") from None
    last = sweep.path[-1]
    number = int(value) if float(value).is_integer() else value
    in_list = isinstance(target, list) and isinstance(last, int) and last < len(target)
    if in_list or (isinstance(target, dict) and last in target):
        target[last] = number
    else:
        raise TuningError(f"rule {sweep.rule_id!r} has no {sweep.name} to change")
    try:
        return parse_rules(
            yaml.safe_dump(changed, allow_unicode=True), f"{source} [{sweep.name}={value:g}]"
        )
    except RuleError as exc:
        raise TuningError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Variant:
    """One rule set of a comparison or sweep and how it scored."""

    label: str
    score: Score
    value: float | None = None
    """The swept field's value (sweeps only)."""

    def row(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "recall": self.score.recall,
            "detected": self.score.detected,
            "incidents": self.score.incidents,
            "false_alarms": self.score.false_alarms,
            "false_alarms_per_1000_sensor_days": round(
                self.score.false_alarms_per_1000_sensor_days, 3
            ),
            "delay_p50_s": self.score.delay_percentile(50),
            "delay_p95_s": self.score.delay_percentile(95),
            "missed": list(self.score.missed),
            "score": self.score.as_dict(),
        }


def recommend(variants: Sequence[Variant]) -> Variant | None:
    """The best of a sweep: highest recall, then fewest false alarms, then the shortest median
    delay. When several values are equally good, the middle one of them (the lower middle of an
    even count): the most margin either way for traffic the recording did not have."""
    scored = [v for v in variants if v.score.recall is not None]
    if not scored:
        return None

    def key(variant: Variant) -> tuple[float, int, float]:
        delay = variant.score.delay_percentile(50)
        recall = variant.score.recall or 0.0
        return (-recall, variant.score.false_alarms, math.inf if delay is None else delay)

    best = min(key(v) for v in scored)
    equal = [v for v in scored if key(v) == best]
    return equal[(len(equal) - 1) // 2]


@dataclass(frozen=True, slots=True)
class Gates:
    min_recall: float | None = None
    max_false_alarms: int | None = None

    def failures(self, variant: Variant) -> list[str]:
        """Why ``variant`` fails the gates (empty: it passes)."""
        found = []
        recall = variant.score.recall
        if self.min_recall is not None and recall is not None and recall < self.min_recall:
            missed = ", ".join(variant.score.missed) or "-"
            found.append(
                f"{variant.label}: recall {recall:.0%} < {self.min_recall:.0%} (missed {missed})"
            )
        if self.max_false_alarms is not None and variant.score.false_alarms > self.max_false_alarms:
            found.append(
                f"{variant.label}: {variant.score.false_alarms} false alarms > "
                f"{self.max_false_alarms}"
            )
        return found


def check_belongs(truth: GroundTruth, metadata: dict[str, object], recording: Path) -> None:
    """Refuse a truth file written for another run than the recording (scenario and seed in the
    recording's header, as ``citysense simulate`` writes it). A recording without them (a live
    capture) cannot be checked and is let through."""
    scenario, seed = metadata.get("scenario"), metadata.get("seed")
    if scenario is None and seed is None:
        return
    if (scenario, seed) != (truth.scenario, truth.seed):
        raise TuningError(
            f"the truth file is for scenario {truth.scenario!r} seed {truth.seed}, but "
            f"{recording.name} is scenario {scenario!r} seed {seed}"
        )


def label_of(path: Path | None) -> str:
    return "default rules" if path is None else path.name
