"""Schemas of ``/api/v1/rules``: the running rule set, its versions, a new set offered."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class RulesVersionOut(BaseModel):
    version: int
    at: datetime = Field(description="When this version started to run.")
    author: str
    source: str = Field(description="start (the file at start-up), api (PUT) or file (an edit).")
    sha256: str
    diff: str = Field(description="Unified diff from the previous version (empty for the first).")


class RulesOut(BaseModel):
    version: int
    path: str | None = Field(description="The rules file; null for the built-in rules.")
    sha256: str
    yaml: str = Field(description="The running rule set as written.")
    rules: list[dict[str, Any]] = Field(description="The running rules, parsed.")
    history: list[RulesVersionOut] = Field(description="Every version, oldest first.")


class EffectiveSetting(BaseModel):
    path: str = Field(description="Dotted, as in the rule file: when.above, clear.hold.")
    value: Any
    level: Literal["default", "kind", "district", "station", "sensor"] = Field(
        description="Where the value comes from: the schema's default, the rule itself, or an"
        " override for the sensor's district, station or the sensor."
    )
    scope: str | None = Field(description="The district code, station id or sensor id.")
    note: str = Field(description="The override's note (why).")


class EffectiveRule(BaseModel):
    rule_id: str
    enabled: bool
    settings: list[EffectiveSetting]
    ignored: list[str] = Field(
        description="Overrides left out for this sensor: with the levels above, the rule they"
        " make does not validate (each with the reason)."
    )


class EffectiveRules(BaseModel):
    version: int = Field(description="The running rule set's version.")
    sensor_id: str
    station_id: str
    district: str | None = Field(description="From the sensor's component id; null if unknown.")
    kind: str
    rules: list[EffectiveRule] = Field(description="Every rule of the sensor's kind.")


class RulesIn(BaseModel):
    yaml: str = Field(min_length=1, max_length=1_000_000, description="A whole rule file (YAML).")
    author: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


class RulesApplied(BaseModel):
    version: int
    sha256: str


class RulesRefusal(BaseModel):
    detail: str
    reasons: list[str] = Field(description="Every problem found; the running rules stay.")


class ShadowOpening(BaseModel):
    rule_id: str
    sensor_id: str
    station_id: str
    severity: str
    started_at: datetime
    opened_at: datetime
    value: float
    threshold: float


class ShadowBoth(ShadowOpening):
    shadow_opened_at: datetime
    shadow_earlier_s: float = Field(
        description="How much earlier the candidate opened (< 0: later)."
    )


class ShadowReport(BaseModel):
    version: str = Field(description="SHA-256 of the candidate rule set.")
    author: str
    since: datetime
    batches: int = Field(description="Batches the candidate has evaluated.")
    live_opened: int
    shadow_opened: int
    only_shadow: list[ShadowOpening] = Field(
        description="What the candidate would open in addition."
    )
    only_live: list[ShadowOpening] = Field(description="What the candidate would miss.")
    both: list[ShadowBoth]
    failed: str | None = Field(
        description="Why the shadow stopped, if it failed (the live rules ran on)."
    )
