"""``/api/v1/cases``: list, one case, and the live stream of case changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AwareDatetime

from center.api.deps import BroadcasterDep, StoreDep
from center.schemas import CaseOut, CasePage, CaseStatus

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

RECONNECT_MS = 3000


@router.get("", response_model=CasePage)
async def list_cases(
    store: StoreDep,
    status: CaseStatus | None = None,
    class_code: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    station_id: str | None = None,
    sensor_id: str | None = None,
    since: Annotated[AwareDatetime | None, Query(description="Opened at or after.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CasePage:
    """Cases, newest opened first."""
    items, total = await store.list_cases(
        status=status,
        class_code=class_code,
        station_id=station_id,
        sensor_id=sensor_id,
        since=since,
        limit=limit,
        offset=offset,
    )
    return CasePage(items=items, total=total)


@router.get("/stream", response_class=EventSourceResponse)
async def stream_cases(broadcaster: BroadcasterDep) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``opened`` / ``updated`` / ``reopened`` / ``cleared`` with the
    ``CaseEvent`` as data, id = case id.

    A client that falls behind is disconnected; it should reconnect and reload the list.
    """
    async with broadcaster.subscribe() as events:
        yield ServerSentEvent(comment="connected", retry=RECONNECT_MS)
        async for event in events:
            yield ServerSentEvent(data=event, event=event.type, id=str(event.case.id))


@router.get("/{case_id}", response_model=CaseOut)
async def get_case(case_id: int, store: StoreDep) -> CaseOut:
    case = await store.get_case(case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"case {case_id} not found")
    return case
