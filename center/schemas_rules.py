"""Schemas of ``/api/v1/rules``: the running rule set, its versions, a new set offered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class RulesIn(BaseModel):
    yaml: str = Field(min_length=1, max_length=1_000_000, description="A whole rule file (YAML).")
    author: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


class RulesApplied(BaseModel):
    version: int
    sha256: str


class RulesRefusal(BaseModel):
    detail: str
    reasons: list[str] = Field(description="Every problem found; the running rules stay.")
