"""The evaluate step's numbers over a window of arrival (``detected_at``): counts grouped in SQL,
and the time cases took to be acknowledged (a person's first action) and to reach dispatch /
handle / close, from the audit trail.

Counts are ``GROUP BY`` queries: no case row is loaded. The durations are one row per case
(the first audit entry of the action, ``min(at)`` grouped by case) and their percentiles are
taken in Python, which SQLite cannot do in SQL: bounded by refusing a window of more than
``MAX_CASES`` cases (``WindowTooLargeError``, the API's 422 asking for a narrower one).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, SQLColumnExpression, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from center.case_query import time_window
from center.db import CaseRow, CaseTransitionRow
from center.errors import CenterError
from center.lifecycle import CLOSED_STEPS, SYSTEM, Action, Step
from center.schemas_stats import (
    CaseStatsOut,
    Category,
    ClassCount,
    DistrictCount,
    Duration,
    Durations,
    GridCount,
    MajorClassCount,
)

MAX_CASES = 100_000
"""The most cases a window may hold: their durations are loaded to take percentiles."""
TIMED: dict[str, Action | None] = {
    "acknowledge": None,  # a person's first entry, whatever it did (lifecycle: acknowledged)
    "dispatch": Action.DISPATCH,
    "handle": Action.HANDLE,
    "close": Action.CLOSE,
}


class WindowTooLargeError(CenterError, ValueError):
    """The window holds more cases than statistics are taken over."""


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value at least ``fraction`` of the values are not above."""
    if not ordered:
        return None
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def _closed() -> ColumnElement[Any]:
    steps = [step.value for step in CLOSED_STEPS]
    return func.coalesce(func.sum(case((CaseRow.step.in_(steps), 1), else_=0)), 0)


class StatsQuery:
    """The queries of one window, one after another in one session: under PostgreSQL's READ
    COMMITTED each sees its own snapshot, so a case written between two of them can make two
    numbers of one answer disagree by one."""

    def __init__(self, session: AsyncSession, since: datetime | None, until: datetime | None):
        self._session = session
        self._since = since
        self._until = until
        self._window = time_window(CaseRow.detected_at, since, until)

    async def _rows(self, statement: Executable) -> Sequence[Any]:
        rows: Sequence[Any] = (await self._session.execute(statement)).all()
        return rows

    async def run(self) -> CaseStatsOut:
        total = (
            await self._session.execute(
                select(func.count()).select_from(CaseRow).where(*self._window)
            )
        ).scalar_one()
        if total > MAX_CASES:
            raise WindowTooLargeError(
                f"the window holds {total} cases, statistics take at most {MAX_CASES}:"
                " narrow it with since/until"
            )
        registered, closed = await self._registered()
        by_class = await self._by_class()
        return CaseStatsOut(
            since=self._since,
            until=self._until,
            total=total,
            registered=registered,
            closed=closed,
            closure_rate=None if registered == 0 else closed / registered,
            by_step=dict.fromkeys(Step, 0) | await self._counts(CaseRow.step, Step),
            by_status={"open": 0, "cleared": 0} | await self._counts(CaseRow.status, str),
            by_district=[
                DistrictCount(district_code=code, total=n, closed=done)
                for code, n, done in await self._grouped(CaseRow.district_code)
            ],
            by_major_class=_majors(by_class),
            by_class=by_class,
            by_grid=[
                GridCount(grid_code=code, total=n, closed=done)
                for code, n, done in await self._grouped(CaseRow.grid_code)
            ],
            time_to=Durations(**{name: await self._duration(a) for name, a in TIMED.items()}),
        )

    async def _counts(self, column: SQLColumnExpression[str], kind: Any) -> dict[Any, int]:
        statement = select(column, func.count()).where(*self._window).group_by(column)
        return {kind(value): n for value, n in await self._rows(statement)}

    async def _grouped(
        self, column: SQLColumnExpression[str | None]
    ) -> list[tuple[str | None, int, int]]:
        count = func.count()
        statement = (
            select(column, count, _closed())
            .where(*self._window)
            .group_by(column)
            .order_by(count.desc(), column.asc().nulls_last())
        )
        return [(value, n, int(done)) for value, n, done in await self._rows(statement)]

    async def _registered(self) -> tuple[int, int]:
        """Cases of the window with a ``register`` entry, and how many of those are closed."""
        steps = [step.value for step in CLOSED_STEPS]
        statement = (
            select(
                func.count(distinct(CaseRow.id)),
                func.count(distinct(case((CaseRow.step.in_(steps), CaseRow.id)))),
            )
            .join(CaseTransitionRow, CaseTransitionRow.case_id == CaseRow.id)
            .where(CaseTransitionRow.action == Action.REGISTER.value, *self._window)
        )
        registered, closed = (await self._session.execute(statement)).one()
        return int(registered), int(closed)

    async def _by_class(self) -> list[ClassCount]:
        count = func.count()
        statement = (
            select(
                CaseRow.category,
                CaseRow.class_code,
                CaseRow.class_name,
                CaseRow.major_name,
                count,
                _closed(),
            )
            .where(*self._window)
            .group_by(CaseRow.category, CaseRow.class_code, CaseRow.class_name, CaseRow.major_name)
            .order_by(count.desc(), CaseRow.category, CaseRow.class_code)
        )
        return [
            ClassCount(
                category=category,
                class_code=code,
                class_name=name,
                major_code=code[:2],
                major_name=major,
                total=n,
                closed=int(done),
            )
            for category, code, name, major, n, done in await self._rows(statement)
        ]

    async def _duration(self, action: Action | None) -> Duration:
        """From arrival to the first audit entry of ``action`` (``None``: a person's first)."""
        entry = (
            CaseTransitionRow.actor != SYSTEM
            if action is None
            else CaseTransitionRow.action == action.value
        )
        statement = (
            select(CaseRow.detected_at, func.min(CaseTransitionRow.at))
            .join(CaseTransitionRow, CaseTransitionRow.case_id == CaseRow.id)
            .where(entry, *self._window)
            .group_by(CaseRow.id, CaseRow.detected_at)
        )
        seconds = sorted(
            (reached - detected).total_seconds()
            for detected, reached in await self._rows(statement)
        )
        return Duration(
            count=len(seconds), p50_s=percentile(seconds, 0.5), p90_s=percentile(seconds, 0.9)
        )


def _majors(classes: list[ClassCount]) -> list[MajorClassCount]:
    """Minor classes summed into their major class (the category's: events have their own)."""
    totals: dict[tuple[Category, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in classes:
        counted = totals[(row.category, row.major_code, row.major_name)]
        counted[0] += row.total
        counted[1] += row.closed
    majors = [
        MajorClassCount(category=category, major_code=code, major_name=name, total=t, closed=c)
        for (category, code, name), (t, c) in totals.items()
    ]
    return sorted(majors, key=lambda m: (-m.total, m.category, m.major_code))
