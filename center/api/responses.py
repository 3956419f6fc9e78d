"""The error answers routes document beside their own (FastAPI adds 422 for parameters), so
that the OpenAPI document lists every status a route can give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Responses = dict[int | str, dict[str, Any]]


class Problem(BaseModel):
    """What went wrong, in one sentence."""

    detail: str


STORE_DOWN: Responses = {
    503: {"model": Problem, "description": "The case store does not answer: try again."}
}
CASE_NOT_FOUND: Responses = {404: {"model": Problem, "description": "No case has that id."}}


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where: `query`, `path`, `body`… and the name.")
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """FastAPI's answer to a request that does not match the document (422)."""

    detail: list[ValidationIssue]
