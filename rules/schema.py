"""Rule definitions (YAML) and their validation.

A rule watches one sensor kind. Its ``when`` condition is evaluated on every reading of a sensor
of that kind; how long or how often it must hold before an alert opens is ``hold`` (sustained
for a duration of event time, optionally ``steady`` within a band) or ``count`` (N of the last M
readings, or N within a window). An open alert clears when ``clear`` holds for its own duration
(hysteresis). ``no_data`` rules open when a sensor stays silent. ``group`` turns alerts of one
cause in one area into one incident naming its members; ``flap`` stops a condition that keeps
coming and going from opening a case each time. ``docs/rules.md`` is the guide.

Durations are seconds (a number) or ``<n>ms|s|m|h|d``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from protocol import SensorKind, kind_values
from protocol.gbt30428 import COMPONENT_MINOR, EVENT_MINOR
from protocol.topics import STATION_ID_PATTERN
from rules.alerts import CaseTarget, Severity

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.yaml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


class RuleError(ValueError):
    """A rule file that cannot be used, with where and why (``reasons``: one per problem)."""

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = reasons if reasons is not None else [message]


class ReadOnlyRulesError(RuntimeError):
    """A new rule set offered to a node that runs the built-in rules: no file to write it to."""


def _seconds(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"duration {value!r} is not a number of seconds or <n>s|m|h|d")
        return float(match[1]) * _UNITS[match[2]]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0, le=366 * 86_400)]
PositiveSeconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=366 * 86_400)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Baseline(_Strict):
    """What a value is expected to be: a rolling mean with time constant ``tau`` and (``profile``)
    the usual level for each quarter hour of the local day, learned over about ``learn_days``
    days. A reading is low when it is below the lower of the two by the rule's drop: a burst is
    below both; a daily demand peak is below neither once the rolling mean has followed it (or
    the profile has learned it). Readings in alarm teach the profile at a quarter of the weight
    and never move the rolling mean, so a burst does not become the baseline."""

    tau: PositiveSeconds = 60.0
    profile: bool = True
    utc_offset_h: float = Field(default=8.0, ge=-12, le=14, description="Local time of the day.")
    learn_days: float = Field(default=3.0, gt=0, le=60)


class Leaf(_Strict):
    """One test on one value. Exactly one of the tests is given."""

    field: str
    above: float | None = None
    below: float | None = None
    outside: tuple[float, float] | None = None
    rate_above: float | None = Field(default=None, description="Rise per second.")
    rate_below: float | None = Field(default=None, description="Change per second (negative).")
    drop: float | None = Field(default=None, gt=0, description="Below the baseline by this much.")
    drop_fraction: float | None = Field(default=None, gt=0, lt=1)
    baseline: Baseline | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Leaf:
        tests = [
            name
            for name in ("above", "below", "outside", "rate_above", "rate_below", "drop")
            if getattr(self, name) is not None
        ]
        if self.drop_fraction is not None and "drop" not in tests:
            tests.append("drop_fraction")
        if len(tests) != 1:
            raise ValueError(
                "give exactly one of above, below, outside, rate_above, rate_below, drop"
                f" or drop_fraction (got {', '.join(tests) or 'none'})"
            )
        if self.outside is not None and not self.outside[0] < self.outside[1]:
            raise ValueError(f"outside needs [low, high] with low < high, not {self.outside}")
        if self.baseline is not None and tests[0] not in ("drop", "drop_fraction"):
            raise ValueError("baseline only goes with drop or drop_fraction")
        return self

    @property
    def needs_baseline(self) -> bool:
        return self.drop is not None or self.drop_fraction is not None

    @property
    def needs_previous(self) -> bool:
        return self.rate_above is not None or self.rate_below is not None


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


def _condition_shape(value: Any) -> str:
    if isinstance(value, dict):
        return "all_of" if "all" in value else "any_of" if "any" in value else "leaf"
    if isinstance(value, AllOf | AnyOf):
        return "all_of" if isinstance(value, AllOf) else "any_of"
    return "leaf"


Condition = Annotated[
    Annotated[Leaf, Tag("leaf")]
    | Annotated[AllOf, Tag("all_of")]
    | Annotated[AnyOf, Tag("any_of")],
    Discriminator(_condition_shape),
]


def leaves(condition: Condition) -> list[Leaf]:
    if isinstance(condition, Leaf):
        return [condition]
    parts = condition.all if isinstance(condition, AllOf) else condition.any
    return [leaf for part in parts for leaf in leaves(part)]


class Count(_Strict):
    """N of the last M readings (``of``), or N readings within a window (``within``)."""

    n: int = Field(ge=1, le=64)
    of: int | None = Field(default=None, ge=1, le=64)
    within: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _one_window(self) -> Count:
        if (self.of is None) == (self.within is None):
            raise ValueError("count needs exactly one of of (readings) or within (a duration)")
        if self.of is not None and self.n > self.of:
            raise ValueError(f"count n ({self.n}) must not exceed of ({self.of})")
        return self


class Clear(_Strict):
    """When an open alert is over: ``when`` (default: the open condition no longer holds) for
    ``hold`` seconds of event time."""

    when: Condition | None = None
    hold: Seconds = 0.0


class Group(_Strict):
    """Alerts of this rule within ``within_m`` metres of an open incident's first sensor, and
    within ``window`` of its opening, join it as members instead of opening cases of their own;
    with ``min_sensors`` > 1 an incident opens only once that many sensors are in alarm."""

    within_m: float = Field(gt=0, le=100_000)
    window: PositiveSeconds
    min_sensors: int = Field(default=1, ge=1, le=1000)


class Flap(_Strict):
    """The ``max_opens``-th opening within ``window`` re-opens the last case marked flapping,
    which then clears only after the clear condition has held for ``quiet``."""

    max_opens: int = Field(default=3, ge=2, le=32)
    window: PositiveSeconds = 1800.0
    quiet: PositiveSeconds = 1800.0


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    kind: SensorKind
    severity: Severity = "urgent"
    case: CaseTargetIn
    when: Condition | None = None
    hold: Seconds = 0.0
    steady: float | None = Field(
        default=None, gt=0, description="Values during the hold stay within a band this wide."
    )
    count: Count | None = None
    clear: Clear | None = None
    no_data: PositiveSeconds | None = Field(
        default=None, description="Open when a sensor of the kind is silent this long."
    )
    stale_after: PositiveSeconds = Field(
        default=26 * 3600.0,
        description="A report older than this no longer says what state the sensor is in.",
    )
    group: Group | None = None
    flap: Flap | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        if (self.when is None) == (self.no_data is None):
            raise ValueError("a rule has either a when condition or no_data, not both or neither")
        if self.count is not None and (self.hold or self.steady is not None):
            raise ValueError("count and hold/steady are two ways to debounce: give one")
        if self.no_data is not None and (self.clear or self.count or self.steady or self.hold):
            raise ValueError("a no_data rule takes no hold, count, steady or clear")
        if self.steady is not None and len(self.watched()) != 1:
            raise ValueError("steady needs a condition on one value")
        if self.clear is not None and self.clear.when is not None:
            for leaf in leaves(self.clear.when):
                if leaf.needs_baseline or leaf.needs_previous:
                    raise ValueError(
                        "a clear condition compares with plain thresholds (above, below,"
                        " outside); omit clear.when to clear when the open condition ends"
                    )
        known = kind_values(self.kind)
        for name in sorted(self.fields() - known):
            raise ValueError(
                f"field {name!r} is not a {self.kind.value} value; {self.kind.value} readings"
                f" carry {', '.join(sorted(known))}"
            )
        return self

    def watched(self) -> list[Leaf]:
        return leaves(self.when) if self.when is not None else []

    def fields(self) -> set[str]:
        """Every value name the rule reads."""
        names = {leaf.field for leaf in self.watched()}
        if self.clear is not None and self.clear.when is not None:
            names |= {leaf.field for leaf in leaves(self.clear.when)}
        return names

    @property
    def primary_field(self) -> str:
        watched = self.watched()
        return watched[0].field if watched else ""


class CaseTargetIn(_Strict):
    category: Literal["component", "event"]
    code: str | None = Field(
        default=None, description="GB/T 30428 class; omit for the watched asset's own class."
    )

    @model_validator(mode="after")
    def _known_code(self) -> CaseTargetIn:
        if self.code is None:
            if self.category == "event":
                raise ValueError("an event case needs its class code (e.g. 0402)")
            return self
        table = COMPONENT_MINOR if self.category == "component" else EVENT_MINOR
        if self.code not in table:
            raise ValueError(f"unknown GB/T 30428 {self.category} class {self.code}")
        return self

    def target(self) -> CaseTarget:
        return CaseTarget(self.category, self.code)


AllOf.model_rebuild()
AnyOf.model_rebuild()
Clear.model_rebuild()
Rule.model_rebuild()

# The name the first rule schema had; kept so callers that only need "a rule" keep reading.
ThresholdRule = Rule


OVERRIDABLE = frozenset(
    {"when", "hold", "steady", "count", "clear", "no_data", "stale_after", "enabled", "severity"}
)
"""What an override may change. The rest (id, kind, case class, grouping, flapping) is the
rule's own: one rule id is one kind of case, grouped the same way everywhere."""


class Override(_Strict):
    """Settings of one rule changed for a district, a station or one sensor (rules.inherit)."""

    rule: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    district: str | None = Field(
        default=None, pattern=r"^[0-9]{6}$", description="First 6 digits of the component id."
    )
    station: str | None = Field(default=None, pattern=STATION_ID_PATTERN)
    sensor: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    set: dict[str, Any] = Field(min_length=1)
    note: str = Field(default="", max_length=500, description="Why (shown by explain).")

    @model_validator(mode="after")
    def _one_scope(self) -> Override:
        given = [n for n in ("district", "station", "sensor") if getattr(self, n) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"give exactly one of district, station or sensor (got {got})")
        unknown = sorted(set(self.set) - OVERRIDABLE)
        if unknown:
            raise ValueError(
                f"an override cannot change {', '.join(unknown)}; it may set"
                f" {', '.join(sorted(OVERRIDABLE))}"
            )
        return self

    @property
    def level(self) -> Literal["district", "station", "sensor"]:
        if self.sensor is not None:
            return "sensor"
        return "station" if self.station is not None else "district"

    @property
    def scope_id(self) -> str:
        return self.sensor or self.station or self.district or ""

    def label(self) -> str:
        return f"override of {self.rule!r} for {self.level} {self.scope_id}"


class RuleSet(_Strict):
    rules: list[Rule] = Field(min_length=1)
    overrides: list[Override] = Field(
        default_factory=list,
        description="Settings changed per district, station or sensor; the most specific wins.",
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule ids: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _overrides_apply(self) -> RuleSet:
        from rules.inherit import merge, rule_document

        by_id = {rule.id: rule for rule in self.rules}
        problems: list[str] = []
        seen: set[tuple[str, str, str]] = set()
        for override in self.overrides:
            key = (override.rule, override.level, override.scope_id)
            if key in seen:
                problems.append(f"{override.label()} is given twice")
            seen.add(key)
            rule = by_id.get(override.rule)
            if rule is None:
                problems.append(
                    f"{override.label()}: no such rule (the file has {', '.join(sorted(by_id))})"
                )
                continue
            try:
                Rule.model_validate(merge(rule_document(rule), override.set))
            except ValidationError as exc:
                for err in exc.errors():
                    where = ".".join(_path(err["loc"]))
                    message = err["msg"].removeprefix("Value error, ")
                    problems.append(f"{override.label()}: {where + ': ' if where else ''}{message}")
        if problems:
            raise ValueError("\n".join(dict.fromkeys(problems)))
        return self

    @property
    def has_overrides(self) -> bool:
        return bool(self.overrides)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def _path(loc: tuple[int | str, ...]) -> list[str]:
    """A pydantic error location without its union-branch labels (Leaf, AllOf, ...)."""
    return [str(p) for p in loc if str(p) not in ("leaf", "all_of", "any_of")]


def _where(document: Any, loc: tuple[int | str, ...]) -> str:
    """``rule 'cover-open': when.field`` for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = document.get("rules") if isinstance(document, dict) else None
        item = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = item.get("id") if isinstance(item, dict) else None
        label = f"rule {name!r}" if isinstance(name, str) else f"rule #{loc[1] + 1}"
        rest = _path(loc[2:])
        return f"{label}: {'.'.join(rest)}" if rest else label
    if len(loc) >= 2 and loc[0] == "overrides" and isinstance(loc[1], int):
        rest = [str(p) for p in loc[2:]]
        label = f"override #{loc[1] + 1}"
        return f"{label}: {'.'.join(rest)}" if rest else label
    return ".".join(str(p) for p in loc) or "document"


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{source}: not valid YAML: {exc}") from None
    try:
        return RuleSet.model_validate(document)
    except ValidationError as exc:
        seen: list[str] = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            # the rule set's own checks (ids, overrides) give one reason per line
            parts = message.split("\n") if not err["loc"] else [message]
            for part in parts:
                line = f"{_where(document, err['loc'])}: {part}" if err["loc"] else part
                if line not in seen:
                    seen.append(line)
        raise RuleError(f"{source}: {'; '.join(seen)}", seen) from None


def load_rules(path: Path = DEFAULT_RULES_FILE) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read rules file {path}: {exc}") from None
    except UnicodeDecodeError:
        raise RuleError(f"{path} is not a rules file: not UTF-8 text (rules are YAML)") from None
    return parse_rules(text, str(path))
