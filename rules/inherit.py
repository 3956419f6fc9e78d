"""Inherited thresholds: a rule's settings for one sensor, and where each one comes from.

A rule is written for a sensor kind. ``overrides`` in the rule file change some of its settings
for a district (the first six digits of a sensor's component id), a station, or one sensor; the
most specific level wins, setting by setting:

    kind (the rule itself) -> district -> station -> sensor

An override's ``set`` is merged into the rule as the rule file would spell it: mappings merge key
by key (``when: {above: 25}`` keeps the rule's ``field``), lists and plain values replace, and
giving one of a test's thresholds (``above``, ``below``, ...) replaces the test the level above
used, so ``below: 5`` over ``above: 20`` is a ``below`` test. ``resolve`` gives the effective rule;
``explain`` lists every setting with the level it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from rules.schema import Override, Rule, RuleSet

Level = Literal["default", "kind", "district", "station", "sensor"]
LEVELS: tuple[Level, ...] = ("default", "kind", "district", "station", "sensor")
TESTS = frozenset(
    {"above", "below", "outside", "rate_above", "rate_below", "drop", "drop_fraction"}
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a sensor sits: its station (from its id) and, once known, its district."""

    sensor_id: str
    station_id: str
    district: str | None = None

    @classmethod
    def of(cls, sensor_id: str, district: str | None = None) -> Scope:
        """A sensor id is ``<station_id>.<local id>``."""
        return cls(sensor_id, sensor_id.split(".", 1)[0], district)

    def matches(self, override: Override) -> bool:
        if override.sensor is not None:
            return override.sensor == self.sensor_id
        if override.station is not None:
            return override.station == self.station_id
        return override.district is not None and override.district == self.district


@dataclass(frozen=True, slots=True)
class Source:
    level: Level
    scope: str | None
    """The district code, station id or sensor id; None for the rule itself."""
    note: str = ""

    def label(self) -> str:
        if self.level == "default":
            return "default"
        return "kind (the rule)" if self.scope is None else f"{self.level} {self.scope}"


DEFAULT = Source("default", None)
"""A setting no level gives: the rule schema's default."""


@dataclass(frozen=True, slots=True)
class Setting:
    path: str
    """Dotted, as in the rule file: ``when.above``, ``clear.hold``."""
    value: Any
    source: Source


@dataclass(frozen=True, slots=True)
class Effective:
    """One rule as it applies to one sensor."""

    rule: Rule
    settings: tuple[Setting, ...]
    ignored: tuple[str, ...] = ()
    """Overrides left out because the rule they made did not validate, with the reason."""


def applicable(rules: RuleSet, rule_id: str, scope: Scope) -> list[int]:
    """Indexes into ``rules.overrides`` that apply to ``scope`` for one rule, least specific
    first (district, station, sensor)."""
    found = [
        (LEVELS.index(o.level), i)
        for i, o in enumerate(rules.overrides)
        if o.rule == rule_id and scope.matches(o)
    ]
    return [i for _, i in sorted(found)]


def merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``change`` over ``base``, as the module docstring says."""
    out = dict(base)
    if TESTS & change.keys():
        for name in TESTS:
            out.pop(name, None)
    for key, value in change.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def rule_document(rule: Rule) -> dict[str, Any]:
    """The rule as its file spells it (unset settings left out)."""
    return rule.model_dump(mode="json", exclude_unset=True)


def resolve(rules: RuleSet, rule: Rule, indexes: Sequence[int]) -> Effective:
    """``rule`` with the overrides at ``indexes`` applied in order. A level whose result does not
    validate is left out (and named in ``ignored``): the rule file checks each override against
    its rule, but two levels can only be checked together for a real sensor."""
    document = rule_document(rule)
    sources: dict[str, Source] = dict.fromkeys(_paths(document), Source("kind", None))
    current, ignored = rule, []
    for index in indexes:
        override = rules.overrides[index]
        merged = merge(document, override.set)
        try:
            candidate = Rule.model_validate(merged)
        except ValidationError as exc:
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            ignored.append(f"{override.label()}: {reason}")
            continue
        source = Source(override.level, override.scope_id, override.note)
        changed, present = _paths(override.set), _paths(merged)
        kept = {p: s for p, s in sources.items() if p in present}
        sources = kept | dict.fromkeys((p for p in present if _under(p, changed)), source)
        document, current = merged, candidate
    values = current.model_dump(mode="json", exclude_none=True)
    settings = tuple(
        Setting(path, value, sources.get(path, DEFAULT))
        for path, value in _flat(values)
        if path not in ("id", "kind")
    )
    return Effective(current, settings, tuple(ignored))


def effective(rules: RuleSet, scope: Scope, kind: str | None = None) -> list[Effective]:
    """Every rule of ``kind`` (all rules when None) as it applies to the sensor at ``scope``."""
    return [
        resolve(rules, rule, applicable(rules, rule.id, scope))
        for rule in rules.rules
        if kind is None or rule.kind.value == kind
    ]


def explain(rules: RuleSet, scope: Scope, kind: str | None = None) -> dict[str, Any]:
    """``effective`` as a JSON-able document (the API's and ``citysense rules explain``'s)."""
    return {
        "sensor_id": scope.sensor_id,
        "station_id": scope.station_id,
        "district": scope.district,
        "kind": kind,
        "rules": [
            {
                "rule_id": e.rule.id,
                "enabled": e.rule.enabled,
                "settings": [
                    {
                        "path": s.path,
                        "value": s.value,
                        "level": s.source.level,
                        "scope": s.source.scope,
                        "note": s.source.note,
                    }
                    for s in e.settings
                ],
                "ignored": list(e.ignored),
            }
            for e in effective(rules, scope, kind)
        ],
    }


def _flat(document: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{path}.")
        else:
            yield path, value


def _paths(document: Mapping[str, Any]) -> set[str]:
    return {path for path, _ in _flat(document)}


def _under(path: str, changed: set[str]) -> bool:
    """``path`` was set by an override that changed ``changed`` (itself, or a parent it gave
    as a plain value or a list, replaced whole)."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in changed for i in range(1, len(parts) + 1))
