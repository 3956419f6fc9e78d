"""``/api/v1/rejects``: the dead letters — messages ingest refused, alerts the center refused.

Answers 503 when the node was built without dead letters (``create_app(rejects=None)``).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query

from center.api.deps import RejectsDep
from center.schemas_query import MAX_ID, ApiTime
from center.schemas_rejects import RejectOut, RejectPage
from center.views import RejectRecord

router = APIRouter(prefix="/api/v1/rejects", tags=["rejects"])

UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "This node keeps no dead letters."}
}


def reject_out(letter: RejectRecord) -> RejectOut:
    return RejectOut(
        id=letter.id,
        kind="alert" if letter.kind == "alert" else "message",
        received_at=letter.received_at,
        topic=letter.topic,
        station_id=letter.station_id,
        reason=letter.reason,
        detail=letter.detail,
        payload=base64.b64encode(letter.payload).decode(),
        size=len(letter.payload),
    )


@router.get("", response_model=RejectPage, responses=UNAVAILABLE)
async def list_rejects(
    rejects: RejectsDep,
    reason: str | None = None,
    station_id: Annotated[str | None, Query(description="From the message's topic.")] = None,
    since: Annotated[ApiTime | None, Query(description="Received at or after.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> RejectPage:
    """Dead letters, newest first."""
    items, total = await rejects.list_rejects(
        reason=reason, station_id=station_id, since=since, limit=limit, offset=offset
    )
    return RejectPage(items=[reject_out(letter) for letter in items], total=total)
