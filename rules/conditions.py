"""Conditions compiled for evaluation: one reading's values (and what the sensor remembers) in,
true / false / unknown out. Pure; times are epoch seconds of event time."""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rules.schema import AllOf, AnyOf, Baseline, Condition, Leaf, leaves

HOUR_S = 3600.0
DEFAULT_BASELINE = Baseline()


class Memory:
    """What a rule remembers about one sensor between readings, for the tests that need it:
    the previous value of each rate-watched field, and the baseline of each drop-watched one."""

    __slots__ = ("base", "prev")

    def __init__(self) -> None:
        self.prev: dict[str, tuple[float, float]] = {}
        self.base: dict[str, BaselineState] = {}


class BaselineState:
    """A rolling mean and, per quarter hour of the local day, the usual level (``profile``;
    NaN where that quarter hour has not been seen yet)."""

    __slots__ = ("mean", "profile", "t")

    def __init__(self, mean: float, t: float, profile: array[float] | None) -> None:
        self.mean, self.t, self.profile = mean, t, profile

    def expected(self, t: float, spec: Baseline) -> float:
        if self.profile is None:
            return self.mean
        usual = self.profile[_slot(t, spec)]
        return self.mean if math.isnan(usual) else min(self.mean, usual)

    def learn(self, t: float, value: float, spec: Baseline, *, abnormal: bool) -> None:
        elapsed = max(0.0, t - self.t)
        if self.profile is not None:
            slot = _slot(t, spec)
            old = self.profile[slot]
            weight = min(1.0, elapsed / (spec.learn_days * SLOT_S))
            if abnormal:
                weight *= ABNORMAL_LEARNING
            if math.isnan(old):  # a quarter hour first seen starts from the rolling mean
                old = self.mean
            self.profile[slot] = old + weight * (value - old)
        if not abnormal:
            self.mean += (1.0 - math.exp(-elapsed / spec.tau)) * (value - self.mean)
        self.t = max(self.t, t)


SLOT_S = 900.0
SLOTS = 96
ABNORMAL_LEARNING = 0.25


def new_baseline(value: float, t: float, spec: Baseline) -> BaselineState:
    profile = array("d", [math.nan] * SLOTS) if spec.profile else None
    return BaselineState(value, t, profile)


def _slot(t: float, spec: Baseline) -> int:
    return int(((t + spec.utc_offset_h * HOUR_S) % 86_400.0) // SLOT_S)


Test = Callable[[Mapping[str, float], float, Memory | None], bool | None]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A condition ready to run, and what it needs."""

    test: Test
    stateful: bool
    """Needs a ``Memory`` kept for every sensor, alarm or not (rates, baselines)."""
    fields: tuple[str, ...]


def compile_condition(condition: Condition) -> Compiled:
    parts = leaves(condition)
    return Compiled(
        test=_compile(condition),
        stateful=any(p.needs_baseline or p.needs_previous for p in parts),
        fields=tuple(dict.fromkeys(p.field for p in parts)),
    )


def _compile(condition: Condition) -> Test:
    if isinstance(condition, AllOf):
        tests = [_compile(c) for c in condition.all]
        return lambda values, t, memory: _all(tests, values, t, memory)
    if isinstance(condition, AnyOf):
        tests = [_compile(c) for c in condition.any]
        return lambda values, t, memory: _any(tests, values, t, memory)
    return _leaf(condition)


def _all(
    tests: list[Test], values: Mapping[str, float], t: float, memory: Memory | None
) -> bool | None:
    result: bool | None = True
    for test in tests:  # evaluate every part: rates and baselines must see every reading
        outcome = test(values, t, memory)
        if outcome is None:
            result = None if result is not False else False
        elif not outcome:
            result = False
    return result


def _any(
    tests: list[Test], values: Mapping[str, float], t: float, memory: Memory | None
) -> bool | None:
    result: bool | None = False
    for test in tests:
        outcome = test(values, t, memory)
        if outcome:
            result = True
        elif outcome is None and result is False:
            result = None
    return result


def _leaf(leaf: Leaf) -> Test:
    name = leaf.field
    if leaf.above is not None:
        above = leaf.above
        return lambda values, _t, _m: None if (v := values.get(name)) is None else v > above
    if leaf.below is not None:
        below = leaf.below
        return lambda values, _t, _m: None if (v := values.get(name)) is None else v < below
    if leaf.outside is not None:
        low, high = leaf.outside
        return lambda values, _t, _m: (
            None if (v := values.get(name)) is None else (v < low or v > high)
        )
    if leaf.needs_previous:
        return _rate(name, leaf.rate_above, leaf.rate_below)
    return _drop(name, leaf.drop, leaf.drop_fraction, leaf.baseline or DEFAULT_BASELINE)


def _rate(name: str, above: float | None, below: float | None) -> Test:
    def test(values: Mapping[str, float], t: float, memory: Memory | None) -> bool | None:
        value = values.get(name)
        if value is None or memory is None:
            return None
        previous = memory.prev.get(name)
        memory.prev[name] = (t, value)
        if previous is None or t <= previous[0]:
            return False
        rate = (value - previous[1]) / (t - previous[0])
        return (above is not None and rate > above) or (below is not None and rate < below)

    return test


def _drop(name: str, drop: float | None, fraction: float | None, spec: Baseline) -> Test:
    def test(values: Mapping[str, float], t: float, memory: Memory | None) -> bool | None:
        value = values.get(name)
        if value is None or memory is None:
            return None
        state = memory.base.get(name)
        if state is None:
            memory.base[name] = new_baseline(value, t, spec)
            return False
        expected = state.expected(t, spec)
        limit = expected - (drop if drop is not None else expected * (fraction or 0.0))
        abnormal = value < limit
        state.learn(t, value, spec, abnormal=abnormal)
        return abnormal

    return test


def threshold_of(leaf: Leaf, memory: Memory | None, t: float) -> float:
    """The number a leaf compares with, for the case's evidence."""
    for number in (leaf.above, leaf.below, leaf.rate_above, leaf.rate_below):
        if number is not None:
            return number
    if leaf.outside is not None:
        return leaf.outside[1]
    if memory is not None and (state := memory.base.get(leaf.field)) is not None:
        expected = state.expected(t, leaf.baseline or DEFAULT_BASELINE)
        return expected - (
            leaf.drop if leaf.drop is not None else expected * (leaf.drop_fraction or 0)
        )
    return math.nan
