"""The outbox relay: every case event, from the ``case_events`` table, to one subscriber, in id
order, from a cursor persisted in the same database.

One relay per subscriber (a webhook, the MQTT topic). It reads the events after its cursor,
page by page, and hands them to its channel one at a time; only once the channel confirms one
(a 2xx, a PUBACK) does the cursor move past it. So:

- **Nothing is skipped.** An outage (connection refused, a timeout, a 5xx, 408, 429, a broker
  that is away) is retried, the same event, with jittered exponential backoff
  (``protocol.backoff``) or after the receiver's ``Retry-After``, for as long as it takes.
- **In order.** The next event is sent only after the one before was confirmed. Event ids
  commit in id order (``center.transactions.EVENT_LOCK``), so no event appears behind the cursor.
- **At least once.** A crash between the confirmation and the cursor's write sends that event
  again after the restart; so does a receiver that took an event and did not answer in time.
  Receivers de-duplicate by the event id (``webhook-id``, ``id`` in the payload).
- **A permanent refusal stops the subscriber** (a 4xx other than 408/429: the receiver says
  it will never take this event). Skipping would break "every event, in order"; so the relay
  records the refusal (cursor row, log, metrics, ``/healthz``) and stops. The next start of
  the node tries that event again: fix the receiver or the configuration, then restart.

Woken by the node's own new events (``CaseBroadcaster.wakeup``); polls the table every
``poll_s`` for events another process wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from center.delivery.cursors import Cursor, CursorStore, Refusal, utc_now
from center.delivery.settings import StartAt
from center.errors import StoreError
from center.schemas import CaseEvent
from protocol.backoff import Backoff

log = logging.getLogger(__name__)

PAGE = 200
STORE_RETRY_MAX_S = 30.0
T = TypeVar("T")


class DeliveryError(Exception):
    """A delivery attempt that failed; ``cause`` is a short label for metrics (``unreachable``,
    ``timeout``, ``http_503``...), the message says more."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(detail or cause)
        self.cause = cause


class TransientDeliveryError(DeliveryError):
    """Try the same event again later (``retry_after`` seconds if the receiver said so)."""

    def __init__(self, cause: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(cause, detail)
        self.retry_after = retry_after


class RefusedDeliveryError(DeliveryError):
    """The receiver will never take this event: the subscriber stops."""


class Channel(Protocol):
    """Where one subscriber's events go. ``send`` returns once the receiver confirmed."""

    @property
    def name(self) -> str: ...

    @property
    def start(self) -> StartAt: ...

    async def send(self, event: CaseEvent) -> None: ...


class EventLog(Protocol):
    async def events_after(self, after: int, limit: int = PAGE) -> Sequence[CaseEvent]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_s: float = 1.0
    max_s: float = 300.0
    retry_after_max_s: float = 3600.0
    poll_s: float = 5.0

    def backoff(self, rng: random.Random) -> Backoff:
        return Backoff(initial=self.initial_s, maximum=max(self.max_s, self.initial_s), rng=rng)


RelayState = Literal["starting", "idle", "delivering", "retrying", "stopped"]


@dataclass
class RelayStatus:
    """What ``/healthz`` and ``/metrics`` show of one subscriber."""

    state: RelayState = "starting"
    cursor: int = 0
    lag: int = 0
    delivered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    refusal: Refusal | None = None

    def health(self) -> dict[str, object]:
        body: dict[str, object] = {"state": self.state, "cursor": self.cursor, "lag": self.lag}
        if self.last_error:
            body["last_error"] = self.last_error
        if self.refusal is not None:
            body["refused"] = {
                "event_id": self.refusal.event_id,
                "reason": self.refusal.reason,
                "at": self.refusal.at.isoformat(),
            }
        return body


class Relay:
    """Deliver every case event to one channel; ``run`` until cancelled (or refused)."""

    def __init__(
        self,
        channel: Channel,
        events: EventLog,
        cursors: CursorStore,
        wakeup: asyncio.Event,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.channel = channel
        self.name = channel.name
        self.policy = policy or RetryPolicy()
        self.status = RelayStatus()
        self._events, self._cursors, self._wakeup = events, cursors, wakeup
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()

    async def run(self) -> None:
        cursor: Cursor = await self._store(
            lambda: self._cursors.open(self.name, self.channel.start, self._clock())
        )
        self.status.cursor = cursor.last_event_id
        if cursor.refusal is not None:
            log.warning(
                "%s: trying event %d again, refused before: %s",
                self.name,
                cursor.refusal.event_id,
                cursor.refusal.reason,
            )
        while True:
            self._wakeup.clear()  # before reading: an event committed after this wakes us
            page = await self._store(lambda: self._events.events_after(self.status.cursor, PAGE))
            self.status.lag = await self._store(
                lambda: self._cursors.count_after(self.status.cursor)
            )
            if not page:
                self.status.state = "idle"
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.policy.poll_s):
                        await self._wakeup.wait()
                continue
            for event in page:
                if not await self._deliver(event):
                    return
                await self._store(functools.partial(self._advance, event.id))

    async def _advance(self, event_id: int) -> None:
        await self._cursors.advance(self.name, event_id, self._clock())
        self.status.cursor = event_id
        self.status.delivered += 1
        self.status.lag = max(self.status.lag - 1, 0)
        self.status.refusal = None

    async def _deliver(self, event: CaseEvent) -> bool:
        """Send one event until it is confirmed (True) or refused for good (False)."""
        backoff = self.policy.backoff(self._rng)
        while True:
            self.status.state = "delivering"
            try:
                await self.channel.send(event)
            except TransientDeliveryError as exc:
                delay = self._retry_delay(exc, backoff)
                self._failed(exc.cause, f"event {event.id}: {exc}")
                log.warning(
                    "%s: event %d not delivered (%s); again in %.1f s",
                    self.name,
                    event.id,
                    exc,
                    delay,
                )
            except RefusedDeliveryError as exc:
                self._failed(exc.cause, f"event {event.id}: {exc}")
                await self._refused(event, exc)
                return False
            except Exception as exc:  # a bug must neither kill the node nor skip the event
                delay = backoff.next_delay()
                self._failed("internal_error", f"event {event.id}: {type(exc).__name__}: {exc}")
                log.exception("%s: event %d failed; again in %.1f s", self.name, event.id, delay)
            else:
                self.status.last_error = ""
                return True
            self.status.state = "retrying"
            await self._refresh_lag()  # events keep coming while this one waits
            await self._sleep(delay)

    async def _refresh_lag(self) -> None:
        with contextlib.suppress(StoreError):  # a gauge: the next read tries again
            self.status.lag = await self._cursors.count_after(self.status.cursor)

    def _retry_delay(self, exc: TransientDeliveryError, backoff: Backoff) -> float:
        if exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.policy.retry_after_max_s)
        return backoff.next_delay()

    def _failed(self, cause: str, detail: str) -> None:
        self.status.failed[cause] += 1
        self.status.last_error = detail

    async def _refused(self, event: CaseEvent, exc: RefusedDeliveryError) -> None:
        refusal = Refusal(event.id, str(exc), self._clock())
        self.status.refusal = refusal
        self.status.state = "stopped"
        log.error(
            "%s: event %d refused for good (%s); delivery to it stops until the node restarts",
            self.name,
            event.id,
            exc,
        )
        await self._store(lambda: self._cursors.refuse(self.name, refusal))

    async def _store(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a case-store operation, retrying while the store is down."""
        backoff = Backoff(initial=min(1.0, self.policy.initial_s), maximum=STORE_RETRY_MAX_S)
        while True:
            try:
                return await operation()
            except StoreError as exc:
                delay = backoff.next_delay()
                self.status.last_error = str(exc)
                log.warning("%s: %s; again in %.1f s", self.name, exc, delay)
                await self._sleep(delay)
