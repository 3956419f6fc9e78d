"""In-process fan-out of case events to live subscribers (the SSE stream).

Each subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is full
has fallen behind and is disconnected (and counted); its client reconnects and reloads.

Delivery to other systems (``center.delivery``) reads the event log itself and only needs to be
woken: ``wakeup()`` gives it an event that every publish sets, which can never fall behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from center.schemas import CaseEvent

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000


class _End:
    """Queued last, to wake a subscriber that has been disconnected or closed."""


_END: Final = _End()


class Subscription:
    """One subscriber's queue; iterate it for events until it is disconnected."""

    def __init__(self, queue_size: int) -> None:
        self._queue: asyncio.Queue[CaseEvent | _End] = asyncio.Queue(queue_size + 1)
        self._capacity = queue_size
        self.ended = False
        self.lagged = False

    @property
    def pending(self) -> int:
        """Events queued and not read yet."""
        return self._queue.qsize() - (1 if self.ended and not self._queue.empty() else 0)

    def offer(self, event: CaseEvent) -> bool:
        """Queue an event; ``False`` when the subscriber is too far behind to take it."""
        if self.ended:
            return True
        if self._queue.qsize() >= self._capacity:
            return False
        self._queue.put_nowait(event)
        return True

    def end(self, *, lagged: bool = False) -> None:
        """Stop the subscription; a lagging one loses what it had not read yet."""
        if self.ended:
            return
        self.ended, self.lagged = True, lagged
        if lagged:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(_END)

    def __aiter__(self) -> AsyncIterator[CaseEvent]:
        return self

    async def ticking(self, every_s: float) -> AsyncIterator[CaseEvent | None]:
        """The events, and ``None`` each time ``every_s`` passes without one (a live stream's
        turn to send a keep-alive); ends when the subscription does. The wait is on the
        queue itself, so nothing is lost when it times out."""
        while True:
            try:
                async with asyncio.timeout(every_s):
                    item = await self._queue.get()
            except TimeoutError:
                yield None
                continue
            if isinstance(item, _End):
                self._queue.put_nowait(item)
                return
            yield item

    async def __anext__(self) -> CaseEvent:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stay ended for any later read
            raise StopAsyncIteration
        return item


class CaseBroadcaster:
    """Publish ``CaseEvent``s to every current subscriber without ever blocking."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size {queue_size} must be >= 1")
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._wakeups: list[asyncio.Event] = []
        self._closed = False
        self.published = 0
        self.lagging_disconnected = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def wakeup(self) -> asyncio.Event:
        """An ``asyncio.Event`` set on every publish (the reader clears it before it reads)."""
        event = asyncio.Event()
        self._wakeups.append(event)
        return event

    def publish(self, event: CaseEvent) -> None:
        self.published += 1
        for wakeup in self._wakeups:
            wakeup.set()
        for subscription in list(self._subscriptions):
            if not subscription.offer(event):
                self._subscriptions.discard(subscription)
                subscription.end(lagged=True)
                self.lagging_disconnected += 1
                log.warning("live subscriber fell %d events behind: disconnected", self._queue_size)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive every event published while inside the block."""
        subscription = Subscription(self._queue_size)
        if self._closed:
            subscription.end()
        else:
            self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.end()

    def close(self) -> None:
        """End every subscription (on shutdown, so live streams finish and the server can stop)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()
