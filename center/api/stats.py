"""``/api/v1/stats``: the evaluate step's numbers (考核评价) over a window of arrival."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from center.api.deps import StoreDep
from center.api.responses import STORE_DOWN
from center.schemas_query import TimeWindow
from center.schemas_stats import CaseStatsOut
from center.stats import WindowTooLargeError

router = APIRouter(prefix="/api/v1/stats", tags=["cases"])


@router.get("", response_model=CaseStatsOut, responses=STORE_DOWN)
async def case_stats(store: StoreDep, window: Annotated[TimeWindow, Query()]) -> CaseStatsOut:
    """Counts by step, sensor status, district, class and grid (the road segment unit), the
    closure rate, and p50/p90 of the time to register, dispatch, handle and close (from the
    audit trail), for the cases the center learned of in ``[since, until)``; all time without
    them. A window of more than 100,000 cases is refused (422): narrow it."""
    try:
        return await store.stats(window.since, window.until)
    except WindowTooLargeError as exc:
        error = {"type": "value_error", "loc": ("query", "since"), "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from None
