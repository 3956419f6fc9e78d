"""Rules compiled once for evaluation: the condition tests, the debounce settings, and a fast
screen for the common case of a sensor at rest and a plain threshold."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rules.conditions import Memory, Test, compile_condition, threshold_of
from rules.schema import AllOf, AnyOf, Condition, Count, Rule, RuleSet
from rules.state import Track


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    rule: Rule
    field: str
    when: Test
    clear_test: Test | None
    """None: the alert clears when ``when`` no longer holds."""
    fast: Callable[[dict[str, float]], bool | None] | None
    """For a rule that remembers nothing between readings: its open condition, so a sensor at
    rest is screened without a track."""
    stateful: bool
    hold: float
    steady: float | None
    count: Count | None
    no_data_rule: bool

    def clear(
        self, values: dict[str, float], t: float, memory: Memory | None, cond: bool
    ) -> bool | None:
        if self.clear_test is None:
            return not cond
        return self.clear_test(values, t, memory)

    def clear_hold(self, track: Track) -> float:
        flap = self.rule.flap
        if track.flapping and flap is not None:
            return flap.quiet
        return self.rule.clear.hold if self.rule.clear is not None else 0.0

    def threshold(self, memory: Memory | None, t: float) -> float:
        watched = self.rule.watched()
        if not watched:
            return self.rule.no_data or math.nan
        return threshold_of(watched[0], memory, t)


def _fast(rule: Rule, stateful: bool) -> Callable[[dict[str, float]], bool | None] | None:
    """The open condition alone, for rules that remember nothing between readings."""
    if rule.when is None or stateful:
        return None
    return _screen(rule.when)


def _screen(condition: Condition) -> Callable[[dict[str, float]], bool | None]:
    """A stateless condition as closures on the values alone (no memory, no time)."""
    if isinstance(condition, AllOf | AnyOf):
        test = compile_condition(condition).test
        return lambda values: test(values, 0.0, None)
    name = condition.field
    if condition.above is not None:
        above = condition.above
        return lambda values: None if (v := values.get(name)) is None else v > above
    if condition.below is not None:
        below = condition.below
        return lambda values: None if (v := values.get(name)) is None else v < below
    assert condition.outside is not None
    low, high = condition.outside
    return lambda values: None if (v := values.get(name)) is None else (v < low or v > high)


def _never(_values: object, _t: float, _memory: object) -> bool | None:
    return False


def compile_rule(rule: Rule) -> CompiledRule:
    when = compile_condition(rule.when) if rule.when is not None else None
    clear = (
        compile_condition(rule.clear.when)
        if rule.clear is not None and rule.clear.when is not None
        else None
    )
    return CompiledRule(
        id=rule.id,
        rule=rule,
        field=rule.primary_field,
        when=when.test if when is not None else _never,
        clear_test=clear.test if clear is not None else None,
        fast=_fast(rule, when is not None and when.stateful),
        stateful=when is not None and when.stateful,
        hold=rule.hold,
        steady=rule.steady,
        count=rule.count,
        no_data_rule=rule.no_data is not None,
    )


def compile_rules(rules: RuleSet) -> tuple[dict[str, list[CompiledRule]], dict[str, CompiledRule]]:
    """Enabled rules by sensor kind (value of ``SensorKind``) and by id."""
    by_kind: dict[str, list[CompiledRule]] = {}
    by_id: dict[str, CompiledRule] = {}
    for rule in rules.rules:
        if not rule.enabled:
            continue
        compiled = compile_rule(rule)
        by_kind.setdefault(rule.kind.value, []).append(compiled)
        by_id[rule.id] = compiled
    return by_kind, by_id
