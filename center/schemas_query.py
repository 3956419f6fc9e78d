"""What the API accepts in a query: bounded types, and the parameters of the case list and the
statistics, validated at the boundary so that a bad value is a 422 that says why and a good one
never becomes a database error.

The bounds are the stores': a case or event id is PostgreSQL's ``INTEGER`` (32 bits), so an
id or an offset above ``MAX_ID`` cannot name anything; PostgreSQL refuses NUL in text, so no
text parameter takes one. A time is an ISO 8601 string with an offset (a bare number is not a
time here), normalised to UTC at once: at the ends of Python's range the offset would carry it
past year 1 or 9999 (``0001-01-01T00:00+14:00``) and the store would fail to convert it; such a
bound is the earliest or latest time there is, which selects the same cases.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from center.lifecycle import Step
from center.schemas import CaseStatus
from rules.alerts import Severity

MAX_ID = 2**31 - 1
"""The largest id a case or an event can have (PostgreSQL ``INTEGER``)."""
NO_NUL = r"^[^\x00]*$"
"""Any text without NUL (which PostgreSQL cannot store or compare)."""
STATION_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # protocol.topics.STATION_ID_PATTERN
SENSOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"  # protocol.models.SensorId
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_only(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (``0.5``, ``1700000000``)."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("a time is ISO 8601 with an offset, e.g. 2026-07-01T08:00:00+08:00")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # only a few hours at either end of the calendar
        extreme = datetime.min if value.year == 1 else datetime.max
        return extreme.replace(tzinfo=UTC)


ApiTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_only),
    AfterValidator(_in_utc),
]
"""A time in a query: ISO 8601 with an offset, in UTC."""
CaseId = Annotated[int, Field(ge=1, le=MAX_ID, description="The case's id.")]

CaseSort = Literal[
    "-detected_at",
    "detected_at",
    "-opened_at",
    "opened_at",
    "-updated_at",
    "updated_at",
    "-severity",
    "severity",
    "step",
    "-step",
    "-id",
    "id",
]
"""``-`` first: descending. ``severity`` in rank (maintenance < warning < urgent < critical),
``step`` in loop order (discover … evaluate); ties by arrival, newest first, then id."""


class TimeWindow(BaseModel):
    """``since`` (inclusive) to ``until`` (exclusive) on ``detected_at``: the center's clock.
    A window whose end is not after its start holds nothing (it is not an error: each bound
    is a valid time, and the document can say no more)."""

    model_config = ConfigDict(extra="ignore")

    since: ApiTime | None = Field(
        None, description="Detected at or after (the center's clock, when it learned of it)."
    )
    until: ApiTime | None = Field(None, description="Detected before (the center's clock).")


class CaseListQuery(TimeWindow):
    """The filters, order and page of ``GET /api/v1/cases``; every filter given must match."""

    status: CaseStatus | None = Field(
        None, description="The sensor's condition: `open` or `cleared` (not the loop's step)."
    )
    step: list[Step] = Field(
        default_factory=list, description="At one of these steps of the loop (repeatable)."
    )
    open_only: bool = Field(
        False,
        description="Only cases whose loop is still open: not at `close` or `evaluate`"
        " (whatever the sensor says).",
    )
    class_code: list[Annotated[str, Field(pattern=r"^[0-9]{4}$")]] = Field(
        default_factory=list, description="GB/T 30428 minor class, e.g. 0103 (repeatable)."
    )
    category: Literal["component", "event"] | None = Field(
        None, description="部件 `component` or 事件 `event`."
    )
    severity: list[Severity] = Field(default_factory=list, description="Repeatable.")
    district: str | None = Field(
        None, pattern=r"^[0-9]{6}$", description="6-digit county code, e.g. 410105."
    )
    grid: str | None = Field(
        None, pattern=r"^[0-9]{14}$", description="14-digit responsibility grid (CJ/T 213)."
    )
    station_id: str | None = Field(None, pattern=STATION_ID)
    sensor_id: str | None = Field(None, pattern=SENSOR_ID, description="The first sensor.")
    opened_from: ApiTime | None = Field(
        None, description="Opened at or after (event time, the device's clock)."
    )
    opened_to: ApiTime | None = Field(
        None, description="Opened before (event time, the device's clock)."
    )
    q: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=NO_NUL,
        description="Text in the title, address, sensor id, station id or class name; any"
        " case, `%` and `_` taken literally.",
    )
    sort: CaseSort = Field("-detected_at", description="The order; `-` first is descending.")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=MAX_ID)
