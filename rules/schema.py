"""Rule definitions (YAML) and their validation.

A threshold rule watches one value of one sensor kind. It opens an alert when the value stays
above ``open_above`` for at least ``sustain_s`` seconds of event time, and clears it when the
value falls to ``clear_below`` or lower. ``clear_below < open_above`` is the hysteresis band that
stops a value hovering at the threshold from flapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol import SensorKind
from protocol.gbt30428 import COMPONENT_MINOR, EVENT_MINOR
from rules.alerts import CaseTarget, Severity

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.yaml")


class RuleError(ValueError):
    """A rule file that cannot be used, with where and why."""


class CaseTargetIn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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


class ThresholdRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    title: str = Field(min_length=1, max_length=200)
    kind: SensorKind
    field: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    open_above: float
    clear_below: float
    sustain_s: float = Field(ge=0, le=86_400)
    severity: Severity = "urgent"
    case: CaseTargetIn
    enabled: bool = True

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdRule:
        if self.clear_below > self.open_above:
            raise ValueError(
                f"clear_below ({self.clear_below}) must not exceed open_above ({self.open_above})"
            )
        return self


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: list[ThresholdRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate rule ids: {', '.join(duplicates)}")
        return self


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"{source}: not valid YAML: {exc}") from None
    try:
        return RuleSet.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RuleError(f"{source}: {problems}") from None


def load_rules(path: Path = DEFAULT_RULES_FILE) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read rules file {path}: {exc}") from None
    return parse_rules(text, str(path))
