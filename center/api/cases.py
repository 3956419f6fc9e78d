"""``/api/v1/cases``: list, one case, and the live stream of case changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT, format_sse_event
from pydantic import WithJsonSchema

from center.api.deps import LiveDep, StoreDep
from center.api.responses import CASE_NOT_FOUND, STORE_DOWN, Responses
from center.broadcast import Subscription
from center.case_query import CaseFilter
from center.schemas import CaseOut, CasePage
from center.schemas_query import CaseId, CaseListQuery
from center.stream import EventLog, events_after, start_position

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

RECONNECT_MS = 3000
KEEPALIVE_S = 15.0
"""A quiet stream sends FastAPI's ``KEEPALIVE_COMMENT`` (``: ping``) after this long without a
frame: proxies keep the connection, and a client sees a dead one."""
STREAM_RESPONSE: Responses = {
    200: {
        "description": "The event stream (`text/event-stream`): one frame per event.",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string", "description": "The `CaseEvent`, as JSON."},
                        "event": {"type": "string", "description": "The event's `type`."},
                        "id": {"type": "string", "description": "The event's id."},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
}
EVENT_ID = WithJsonSchema({"type": "integer", "minimum": 0})
"""An optional id is documented as an integer: a header or query parameter is left out, never
sent as null (the default schema of ``int | None`` would allow the text ``null``)."""


@router.get("", response_model=CasePage, responses=STORE_DOWN)
async def list_cases(store: StoreDep, query: Annotated[CaseListQuery, Query()]) -> CasePage:
    """Cases that match every filter given, by default the last the center learned of first
    (``detected_at``, not device time); ``total`` counts every match."""
    items, total = await store.list_cases(
        case_filter(query), sort=query.sort, limit=query.limit, offset=query.offset
    )
    return CasePage(items=items, total=total)


def case_filter(query: CaseListQuery) -> CaseFilter:
    return CaseFilter(
        status=query.status,
        steps=tuple(query.step),
        open_only=query.open_only,
        class_codes=tuple(query.class_code),
        category=query.category,
        severities=tuple(query.severity),
        district=query.district,
        grid=query.grid,
        station_id=query.station_id,
        sensor_id=query.sensor_id,
        since=query.since,
        until=query.until,
        opened_from=query.opened_from,
        opened_to=query.opened_to,
        text=query.q,
    )


async def stream_start(
    live: LiveDep,
    store: StoreDep,
    last_event_id: Annotated[
        int | None,
        Query(
            ge=0,
            description="Resume after this event id (clients that cannot send Last-Event-ID).",
        ),
        EVENT_ID,
    ] = None,
    last_event_id_header: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            description="Resume after this event id (EventSource sends it as it reconnects);"
            " wins over the query parameter.",
        ),
        EVENT_ID,
    ] = None,
) -> int:
    """The event id the stream starts after. Read once ``live`` is subscribed (see
    ``center.stream``) and before the response starts, so a store that is down answers 503."""
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    return await start_position(store, resume)


@router.get(
    "/stream", response_class=StreamingResponse, responses={**STREAM_RESPONSE, **STORE_DOWN}
)
async def stream_cases(
    live: LiveDep, store: StoreDep, after: Annotated[int, Depends(stream_start)]
) -> StreamingResponse:
    """Server-Sent Events: ``opened`` / ``updated`` / ``reopened`` / ``recovered`` /
    ``transition`` / ``escalated`` with the ``CaseEvent`` as data and its event id as the SSE
    ``id``.

    The first frame carries the id the stream starts after. A client that reconnects with the
    last id it got (``Last-Event-ID``) gets every event it missed, then live ones: none twice,
    none missed. One that falls behind is disconnected, and resumes the same way. A quiet
    stream sends the comment ``: ping`` every 15 s.
    """
    return StreamingResponse(
        _frames(live, store, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(live: Subscription, store: EventLog, after: int) -> AsyncIterator[bytes]:
    """The stream's frames, written by the task that waits for the events: an event goes out
    at the event loop's next turn after it is published. (FastAPI's ``EventSourceResponse``
    passes each frame through two more tasks, a turn each; with ingest sharing the loop, a
    turn is a few ms, and under load the two took 25-30 ms of an incident's p99.)"""
    yield format_sse_event(comment="connected", id=str(after), retry=RECONNECT_MS)
    async for event in events_after(store, live.ticking(KEEPALIVE_S), after):
        if event is None:
            yield KEEPALIVE_COMMENT
        else:
            data = event.model_dump_json()
            yield format_sse_event(data_str=data, event=event.type, id=str(event.id))


@router.get("/{case_id}", response_model=CaseOut, responses={**CASE_NOT_FOUND, **STORE_DOWN})
async def get_case(case_id: CaseId, store: StoreDep) -> CaseOut:
    case = await store.get_case(case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"case {case_id} not found")
    return case
