"""Which cases, in which order: a filter and a sort turned into SQL that runs the same on SQLite
and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, SQLColumnExpression, case, or_

from center.db import CaseRow
from center.lifecycle import CLOSED_STEPS, Step
from center.schemas import CaseStatus
from center.schemas_query import CaseSort
from rules.alerts import Severity

SEVERITY_RANK: dict[str, int] = {"maintenance": 1, "warning": 2, "urgent": 3, "critical": 4}
STEP_RANK: dict[str, int] = {step.value: n for n, step in enumerate(Step)}
SEARCHED = (
    CaseRow.title,
    CaseRow.address,
    CaseRow.sensor_id,
    CaseRow.station_id,
    CaseRow.class_name,
)
"""The columns free-text search looks in."""


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Every field given must match; a tuple matches any of its values; times are ``[from,
    to)``: ``since``/``until`` on ``detected_at`` (the center's clock), ``opened_from``/
    ``opened_to`` on ``opened_at`` (the device's). ``open_only``: the loop is not at close or
    evaluate. ``text``: a case-insensitive substring of the title, address, sensor id, station
    id or class name, its ``%`` and ``_`` taken literally."""

    status: CaseStatus | None = None
    steps: tuple[Step, ...] = ()
    open_only: bool = False
    class_codes: tuple[str, ...] = ()
    category: Literal["component", "event"] | None = None
    severities: tuple[Severity, ...] = ()
    district: str | None = None
    grid: str | None = None
    station_id: str | None = None
    sensor_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    opened_from: datetime | None = None
    opened_to: datetime | None = None
    text: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for column, wanted in (
            (CaseRow.status, self.status),
            (CaseRow.category, self.category),
            (CaseRow.district_code, self.district),
            (CaseRow.grid_code, self.grid),
            (CaseRow.station_id, self.station_id),
            (CaseRow.sensor_id, self.sensor_id),
        ):
            if wanted is not None:
                found.append(column == wanted)
        for column, values in (
            (CaseRow.step, tuple(step.value for step in self.steps)),
            (CaseRow.class_code, self.class_codes),
            (CaseRow.severity, self.severities),
        ):
            if values:
                found.append(column.in_(values))
        if self.open_only:
            found.append(CaseRow.step.not_in([step.value for step in CLOSED_STEPS]))
        found.extend(time_window(CaseRow.detected_at, self.since, self.until))
        found.extend(time_window(CaseRow.opened_at, self.opened_from, self.opened_to))
        if self.text:
            found.append(
                or_(*(column.icontains(self.text, autoescape=True) for column in SEARCHED))
            )
        return found


def time_window(
    column: SQLColumnExpression[datetime], start: datetime | None, end: datetime | None
) -> list[ColumnElement[bool]]:
    """``start <= column < end``, for the bounds given."""
    found: list[ColumnElement[bool]] = []
    if start is not None:
        found.append(column >= start)
    if end is not None:
        found.append(column < end)
    return found


def _ranked(column: SQLColumnExpression[str], ranks: dict[str, int]) -> ColumnElement[int]:
    return case(ranks, value=column, else_=0)


def order_by(sort: CaseSort) -> list[SQLColumnExpression[Any]]:
    """The ``ORDER BY`` of a sort: its key, then arrival (newest first) and id, so that pages
    never overlap."""
    name = sort.lstrip("-")
    descending = sort.startswith("-")
    key: SQLColumnExpression[Any] = {
        "detected_at": CaseRow.detected_at,
        "opened_at": CaseRow.opened_at,
        "updated_at": CaseRow.updated_at,
        "severity": _ranked(CaseRow.severity, SEVERITY_RANK),
        "step": _ranked(CaseRow.step, STEP_RANK),
        "id": CaseRow.id,
    }[name]
    first = key.desc() if descending else key.asc()
    if name == "id":
        return [first]
    if name == "detected_at":
        return [first, CaseRow.id.desc() if descending else CaseRow.id.asc()]
    return [first, CaseRow.detected_at.desc(), CaseRow.id.desc()]
