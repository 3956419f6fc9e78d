"""Remote config: what a ``StationConfig`` from the center means for this station. Pure core.

A config is the whole desired state over the station's local settings: ``resolve(local,
config)`` gives the settings to run with, or raises ``ConfigError`` with the reason (a rule
the station lacks, a value a rule does not test, a limit the rule's clear condition would
contradict). ``swap_rules`` carries the rule engine's state over to edited rules, so pending
holds and open alarms survive a threshold change. ``read_saved`` / ``save`` keep the applied
config in the station's state directory (written whole, then renamed into place).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.exception import KindOverride, ReportSettings
from protocol import Channel, StationConfig, StationTopic, decode_config, encode
from protocol.models import ReportConfig
from rules import RuleEngine, RuleSet, restore, snapshot
from rules.schema import AllOf, AnyOf, Condition, Leaf, Rule, leaves

CONFIG_FILE = "config.json"


class ConfigError(ValueError):
    """A config this station cannot apply; the message is the reason sent back."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What remote config may change: the local settings, or a config applied over them."""

    sample_interval: float
    batch_interval: float
    report: ReportSettings
    """``enabled=False``: every reading is forwarded."""
    rules: RuleSet


def resolve(local: RunSettings, config: StationConfig | None) -> RunSettings:
    """``config`` over the local settings (None: the local settings)."""
    if config is None:
        return local
    return RunSettings(
        sample_interval=config.sample_interval_s or local.sample_interval,
        batch_interval=config.batch_interval_s or local.batch_interval,
        report=merge_report(local.report, config.report),
        rules=with_thresholds(local.rules, config.thresholds),
    )


def merge_report(local: ReportSettings, remote: ReportConfig | None) -> ReportSettings:
    """Remote heartbeats and deadbands over the local overrides; alarm limits stay local."""
    if remote is None:
        return local
    kinds = dict(local.kinds)
    for kind, wanted in remote.kinds.items():
        base = kinds.get(kind, KindOverride())
        kinds[kind] = KindOverride(
            heartbeat_s=wanted.heartbeat_s if wanted.heartbeat_s is not None else base.heartbeat_s,
            deadband={**base.deadband, **wanted.deadband},
            alarm_above=base.alarm_above,
            alarm_below=base.alarm_below,
        )
    return ReportSettings(enabled=remote.enabled, kinds=kinds)


def with_thresholds(rules: RuleSet, overrides: Mapping[str, Mapping[str, float]]) -> RuleSet:
    """``rules`` with new above/below limits: ``{rule id: {value[.above|.below]: limit}}``."""
    if not overrides:
        return rules
    by_id = {rule.id: rule for rule in rules.rules}
    unknown = sorted(set(overrides) - by_id.keys())
    if unknown:
        raise ConfigError(f"unknown rule {', '.join(unknown)} (the station has {_ids(rules)})")
    edited = {
        rule_id: _with_limits(by_id[rule_id], limits) for rule_id, limits in overrides.items()
    }
    return RuleSet(rules=[edited.get(rule.id, rule) for rule in rules.rules])


def _with_limits(rule: Rule, limits: Mapping[str, float]) -> Rule:
    when = rule.when
    for key, limit in limits.items():
        name, _, test = key.partition(".")
        watched = leaves(when) if when is not None else []
        found = [leaf for leaf in watched if _limits(leaf, name, test)]
        if not found:
            tested = sorted({leaf.field for leaf in watched})
            raise ConfigError(
                f"rule {rule.id!r} has no above/below limit on {key!r} "
                f"(it tests {', '.join(tested) or 'no value'})"
            )
        if len(found) > 1:
            raise ConfigError(
                f"rule {rule.id!r} tests {name!r} {len(found)} times: "
                f"name the limit as {name}.above or {name}.below"
            )
        assert when is not None  # found a watched leaf
        when = _replace(when, found[0], limit)
    edited = Rule.model_validate({**rule.model_dump(), "when": when})
    _check_hysteresis(edited)
    return edited


def _limits(leaf: Leaf, name: str, test: str) -> bool:
    """Whether ``leaf`` is a plain limit on value ``name`` (``test``: above, below or either)."""
    if leaf.field != name:
        return False
    above, below = leaf.above is not None, leaf.below is not None
    return above if test == "above" else below if test == "below" else above or below


def _replace(condition: Condition, target: Leaf, limit: float) -> Condition:
    if isinstance(condition, Leaf):
        if condition is not target:
            return condition
        test = "above" if condition.above is not None else "below"
        return condition.model_copy(update={test: limit})
    if isinstance(condition, AllOf):
        return AllOf(all=[_replace(part, target, limit) for part in condition.all])
    assert isinstance(condition, AnyOf)
    return AnyOf(any=[_replace(part, target, limit) for part in condition.any])


def _check_hysteresis(rule: Rule) -> None:
    """A clear limit must not lie past the open limit of the same value (it would flap)."""
    if rule.clear is None or rule.clear.when is None:
        return
    for opens in rule.watched():
        for clears in leaves(rule.clear.when):
            if clears.field != opens.field:
                continue
            if opens.above is not None and clears.below is not None and clears.below > opens.above:
                raise ConfigError(
                    f"rule {rule.id!r}: {opens.field} above {opens.above:g} would open while the "
                    f"clear condition (below {clears.below:g}) holds"
                )
            if opens.below is not None and clears.above is not None and clears.above < opens.below:
                raise ConfigError(
                    f"rule {rule.id!r}: {opens.field} below {opens.below:g} would open while the "
                    f"clear condition (above {clears.above:g}) holds"
                )


def _ids(rules: RuleSet) -> str:
    return ", ".join(rule.id for rule in rules.rules)


def swap_rules(engine: RuleEngine, rules: RuleSet) -> RuleEngine:
    """An engine for ``rules`` that carries on from ``engine``: every rule whose id survives
    keeps its pending hold, open alarm and memory (``rules.snapshot``)."""
    if rules == engine.rules:
        return engine
    fresh = restore(rules, snapshot(engine), clock=engine.clock_policy, locate=engine.groups.locate)
    fresh.stats = engine.stats
    return fresh


def read_saved(state_dir: Path, station_id: str) -> StationConfig | None:
    """The config applied before the last restart (None: none kept). Raises ``ValueError``
    (``PayloadError``, ``OSError`` is left to the caller) for a damaged file."""
    path = state_dir / CONFIG_FILE
    if not path.exists():
        return None
    return decode_config(StationTopic(station_id, Channel.CONFIG), path.read_bytes())


def save(state_dir: Path, config: StationConfig) -> None:
    """Write ``config`` whole and rename it into place (a power cut leaves old or new)."""
    path = state_dir / CONFIG_FILE
    partial = path.with_suffix(".tmp")
    with partial.open("wb") as file:
        file.write(encode(config))
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)
    directory = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
