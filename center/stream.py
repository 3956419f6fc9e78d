"""The live stream of case events, resumable: what was missed from the event log, then live.

The order matters. The caller subscribes to the broadcaster first; only then is the log read.
An event committed before the subscription is in the log; one committed after it is published
to the subscription (and may be in the log too, if it committed before the read): so every
event is seen at least once, and a live event whose id is not above the last one sent is one
the log already gave, and is skipped. The service publishes in id order (it writes and
publishes under one lock, and PostgreSQL writers commit in id order), so no later event can
overtake an earlier one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from center.schemas import CaseEvent

REPLAY_PAGE = 500


class EventLog(Protocol):
    async def events_after(self, after: int, limit: int = REPLAY_PAGE) -> Sequence[CaseEvent]: ...

    async def newest_event_id(self) -> int: ...


async def start_position(log: EventLog, last_event_id: int | None) -> int:
    """Where a stream starts: after the client's last event id, or, for a new client, after the
    newest event (it loads the case list, then follows changes from there).

    An id beyond the newest event (another database's, or a case id an older center sent) is
    taken as the newest: replaying nothing is right, skipping events to come would not be.
    Read it after subscribing.
    """
    newest = await log.newest_event_id()
    return newest if last_event_id is None else min(last_event_id, newest)


async def events_after(
    log: EventLog, live: AsyncIterator[CaseEvent | None], after: int, page: int = REPLAY_PAGE
) -> AsyncIterator[CaseEvent | None]:
    """Every event with an id above ``after``: the log's, then ``live``'s (subscribed before
    ``after`` was read), none twice and in id order. Ends when ``live`` ends. A ``None`` from
    ``live`` (a quiet interval, ``Subscription.ticking``) is passed on as it comes."""
    while True:
        batch = await log.events_after(after, page)
        for event in batch:
            yield event
            after = event.id
        if len(batch) < page:
            break
    async for item in live:
        if item is None:
            yield None
        elif item.id > after:
            after = item.id
            yield item
