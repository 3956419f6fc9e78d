"""``/api/v1/cases``: list, one case, and the live stream of case changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AwareDatetime

from center.api.deps import LiveDep, StoreDep
from center.schemas import CaseOut, CasePage, CaseStatus
from center.stream import events_after, start_position

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

RECONNECT_MS = 3000


@router.get("", response_model=CasePage)
async def list_cases(
    store: StoreDep,
    status: CaseStatus | None = None,
    class_code: Annotated[str | None, Query(pattern=r"^\d{4}$")] = None,
    station_id: str | None = None,
    sensor_id: str | None = None,
    since: Annotated[
        AwareDatetime | None,
        Query(description="Detected at or after: when the center learned of it, its clock."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CasePage:
    """Cases, the last the center learned of first (``detected_at``, not device time)."""
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


async def stream_start(
    live: LiveDep,
    store: StoreDep,
    last_event_id: Annotated[
        int | None,
        Query(
            ge=0,
            description="Resume after this event id (clients that cannot send Last-Event-ID).",
        ),
    ] = None,
    last_event_id_header: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            description="Resume after this event id (EventSource sends it as it reconnects);"
            " wins over the query parameter.",
        ),
    ] = None,
) -> int:
    """The event id the stream starts after. Read once ``live`` is subscribed (see
    ``center.stream``) and before the response starts, so a store that is down answers 503."""
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    return await start_position(store, resume)


@router.get("/stream", response_class=EventSourceResponse)
async def stream_cases(
    live: LiveDep, store: StoreDep, after: Annotated[int, Depends(stream_start)]
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``opened`` / ``updated`` / ``reopened`` / ``recovered`` /
    ``transition`` with the ``CaseEvent`` as data and its event id as the SSE ``id``.

    The first frame carries the id the stream starts after. A client that reconnects with the
    last id it got (``Last-Event-ID``) gets every event it missed, then live ones: none twice,
    none missed. One that falls behind is disconnected, and resumes the same way.
    """
    yield ServerSentEvent(comment="connected", id=str(after), retry=RECONNECT_MS)
    async for event in events_after(store, live, after):
        yield ServerSentEvent(data=event, event=event.type, id=str(event.id))


@router.get("/{case_id}", response_model=CaseOut)
async def get_case(case_id: int, store: StoreDep) -> CaseOut:
    case = await store.get_case(case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"case {case_id} not found")
    return case
