"""API schemas of ``GET /api/v1/stats``: the numbers the evaluate step (考核评价) looks at."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from center.lifecycle import Step
from center.schemas import CaseStatus

Category = Literal["component", "event"]


class Counted(BaseModel):
    total: int = Field(description="Cases.")
    closed: int = Field(description="Of them, at `close` or `evaluate`.")


class DistrictCount(Counted):
    district_code: str | None = Field(description="6-digit county; null: an unknown sensor.")


class GridCount(Counted):
    """The road segment unit: the 14-digit responsibility grid (单元网格, CJ/T 213)."""

    grid_code: str | None = Field(description="Null: an unknown sensor.")


class MajorClassCount(Counted):
    category: Category
    major_code: str = Field(description="GB/T 30428 major class, e.g. 01.")
    major_name: str


class ClassCount(MajorClassCount):
    class_code: str = Field(description="GB/T 30428 minor class, e.g. 0103.")
    class_name: str


class Duration(BaseModel):
    """How long cases took to reach a step, from when the center learned of them
    (``detected_at``) to the first audit entry of the action: nearest-rank percentiles."""

    count: int = Field(description="Cases of the window that took the action.")
    p50_s: float | None = Field(description="Median, seconds; null without cases.")
    p90_s: float | None = Field(description="90th percentile, seconds; null without cases.")


class Durations(BaseModel):
    acknowledge: Duration = Field(
        description="To a person's first action on it (`acknowledge`, 接警确认, or a move; the"
        " system's own registration does not count)."
    )
    dispatch: Duration = Field(description="To `dispatch` (任务派遣).")
    handle: Duration = Field(description="To `handle` (问题处置: the owner took it on).")
    close: Duration = Field(description="To `close` (结案, verified on site; not `dismiss`).")


class CaseStatsOut(BaseModel):
    """Cases the center learned of in ``[since, until)`` (``detected_at``), as they are now."""

    since: AwareDatetime | None
    until: AwareDatetime | None
    total: int = Field(description="Cases in the window.")
    registered: int = Field(description="Of them, registered (立案) at some point.")
    closed: int = Field(description="Of the registered, now at `close` or `evaluate` (结案).")
    closure_rate: float | None = Field(
        description="closed / registered (结案率); null when none was registered."
    )
    by_step: dict[Step, int] = Field(description="Where they are in the loop: every step.")
    by_status: dict[CaseStatus, int] = Field(description="The sensor's condition.")
    by_district: list[DistrictCount] = Field(description="Most cases first.")
    by_major_class: list[MajorClassCount] = Field(description="Most cases first.")
    by_class: list[ClassCount] = Field(description="Minor classes, most cases first.")
    by_grid: list[GridCount] = Field(
        description="Cases per road segment, the responsibility grid: most cases first."
    )
    time_to: Durations
