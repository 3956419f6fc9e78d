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
- **At least once.** The cursor is written at most every ``cursor_every_s`` while events flow
  (and once the relay has been idle that long; when the node stops; before a retry's wait),
  not after every event: one write a second instead of one a confirmed event (each write takes
  the case store's write turn, which new cases wait for). A crash therefore sends again what
  was confirmed since the last write (at most ``cursor_every_s`` of deliveries; ``0`` writes
  after every event), and a receiver that took an event and did not answer in time gets it
  again. Receivers de-duplicate by the event id (``webhook-id``, ``id`` in the payload).
- **A permanent refusal stops the subscriber** (a 4xx other than 408/429: the receiver says
  it will never take this event). Skipping would break "every event, in order"; so the relay
  records the refusal (cursor row, log, metrics, ``/healthz``) and stops. The next start of
  the node tries that event again: fix the receiver or the configuration, then restart.

- **One node delivers to a subscriber at a time.** Nodes sharing a case store (PostgreSQL)
  and configured with the same subscriber take turns by a lease in its cursor row (``owner``,
  ``lease_until``): the holder renews it every third of ``lease_s`` and with every cursor move,
  which is refused (``LeaseLostError``, the cursor stays) once another node holds it; the
  others stand by, trying to take it every third of ``lease_s``. A node that stops gives the
  lease up and another takes over at once from the cursor; one that is killed or cut off
  lets it run out, and another takes over within ``lease_s`` (plus a third of it). What the
  killed node had sent and not yet moved the cursor past is sent again (at least once). A
  holder whose lease was last renewed two thirds of ``lease_s`` ago (it was paused, or stuck
  sending) renews it, writing the cursor, before it sends the next event.
  Expiry is judged by each node's clock: they must agree to well within ``lease_s`` (NTP).

Woken by the node's own new events (``CaseBroadcaster.wakeup``); polls the table every
``poll_s`` for events another process wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeVar

from center.delivery.cursors import Cursor, CursorStore, LeaseLostError, Refusal, utc_now
from center.delivery.settings import StartAt
from center.errors import StoreError
from center.schemas import CaseEvent
from protocol.backoff import Backoff

log = logging.getLogger(__name__)

PAGE = 200
STORE_RETRY_MAX_S = 30.0
T = TypeVar("T")


OWNER_CHARS = 64


def default_owner(node: str | None = None) -> str:
    """``node:pid:random``: unique per start of a node, and says which node it is; ``node`` is
    the host name unless the node is given a name (``CITYSENSE_CENTER_DELIVERY__NODE``)."""
    return f"{node or _host()}:{os.getpid()}:{secrets.token_hex(4)}"


def _host() -> str:
    return socket.gethostname()[:40]


_RUNNING: set[str] = set()
"""Owner names of the relays running in this process."""


def gone(owner: str, node: str | None = None) -> bool:
    """Whether ``owner`` names a process of this node (``node``, else this host) that no
    longer runs (a node restarted after a crash need not wait for its own old lease to run
    out): its process id is not in use, or it is this process's id (a container's node is often
    process 1 at every start) and no relay of this process runs under that name. A name of
    another node, or a process id in use by another process, says nothing: the lease must run
    out."""
    parts = owner.split(":")
    if len(parts) < 3 or ":".join(parts[:-2]) != (node or _host()) or not parts[-2].isdigit():
        return False
    pid = int(parts[-2])
    if pid == os.getpid():
        return owner not in _RUNNING
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # running, another user's
        return False
    return False


class _RefusedError(Exception):
    """The subscriber refused an event for good: delivery to it stops."""


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
    lease_s: float = 30.0
    """How long a node's delivery lease lasts unless renewed (every third of it)."""
    cursor_every_s: float = 1.0
    """The cursor is written at most this often while events are confirmed (0: after each)."""

    def backoff(self, rng: random.Random) -> Backoff:
        return Backoff(initial=self.initial_s, maximum=max(self.max_s, self.initial_s), rng=rng)


RelayState = Literal["starting", "standby", "idle", "delivering", "retrying", "stopped"]


@dataclass
class RelayStatus:
    """What ``/healthz`` and ``/metrics`` show of one subscriber."""

    state: RelayState = "starting"
    cursor: int = 0
    """The last event the subscriber confirmed (written to the database within
    ``cursor_every_s``)."""
    saved: int = 0
    """The cursor in the database: where a restart after a crash resumes."""
    lag: int = 0
    delivered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    last_error: str = ""
    refusal: Refusal | None = None
    held_by: str = ""
    """Who holds the delivery lease: this node's owner name, or another node's (standby)."""

    def health(self) -> dict[str, object]:
        body: dict[str, object] = {
            "state": self.state,
            "cursor": self.cursor,
            "saved": self.saved,
            "lag": self.lag,
        }
        if self.held_by:
            body["lease"] = self.held_by
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
        owner: str | None = None,
        lease_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.channel = channel
        self.name = channel.name
        self.policy = policy or RetryPolicy()
        self.owner = (owner or default_owner())[:OWNER_CHARS]
        """This node's name on the subscriber's lease (node, process, a random part)."""
        self._node = self.owner.rsplit(":", 2)[0]
        self._lease = timedelta(seconds=self.policy.lease_s)
        self._lease_sleep = lease_sleep
        self.status = RelayStatus()
        self._events, self._cursors, self._wakeup = events, cursors, wakeup
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()
        self._saved_at = 0.0
        """When the cursor was last written (``time.monotonic``)."""
        self._renewed_at = 0.0
        """When this node last renewed its lease (``time.monotonic``): a claim, a cursor write."""

    async def run(self) -> None:
        """Deliver while this node holds the subscriber's lease; wait (``standby``) while
        another does; return once the subscriber refused an event for good."""
        # the cursor row holds the lease: made first (read again once the lease is held)
        await self._store(lambda: self._cursors.open(self.name, self.channel.start, self._clock()))
        refused = False
        _RUNNING.add(self.owner)
        try:
            while not refused:
                await self._take_lease()
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._hold_lease(), name=f"{self.name}-lease")
                        group.create_task(self._deliver_all(), name=f"{self.name}-deliver")
                except* LeaseLostError as lost:
                    log.warning("%s: %s; standing by", self.name, lost.exceptions[0])
                except* _RefusedError:
                    refused = True
        finally:
            _RUNNING.discard(self.owner)
            await self._save_quietly()
            await self._release()

    async def _take_lease(self) -> None:
        """Wait until this node holds the subscriber's lease (at once when the holder is a
        process of this host that no longer runs: this node's previous life)."""
        replacing: str | None = None
        while True:
            holder = await self._claim(replacing)
            if holder is None:
                self.status.held_by = self.owner
                log.info("%s: delivering (lease %s)", self.name, self.owner)
                return
            if holder != replacing and gone(holder, self._node):
                log.info("%s: %s no longer runs; taking its lease", self.name, holder)
                replacing = holder
                continue
            if self.status.state != "standby" or self.status.held_by != holder:
                log.info("%s: standing by; %s delivers", self.name, holder)
            self.status.state = "standby"
            self.status.held_by = holder
            await self._lease_sleep(self.policy.lease_s / 3)

    async def _hold_lease(self) -> None:
        """Renew the lease every third of its length; raises ``LeaseLostError`` when another
        node has taken it meanwhile."""
        while True:
            await self._lease_sleep(self.policy.lease_s / 3)
            holder = await self._claim()
            if holder is not None:
                raise LeaseLostError(f"{holder} holds the delivery lease now")

    async def _claim(self, replacing: str | None = None) -> str | None:
        """Take or renew the lease (``CursorStore.claim``), retried while the store is down,
        from the clock at each try; ``None`` when this node holds it, else who does."""
        renewing = time.monotonic()
        holder = await self._store(
            lambda: self._cursors.claim(
                self.name, self.owner, self._clock(), self._lease, replacing=replacing
            )
        )
        if holder is None:
            self._renewed_at = renewing
        return holder

    async def _save_quietly(self) -> None:
        """Write the confirmed cursor when this node stops (best effort, as ``_release``: a
        node that cannot, or no longer holds the lease, sends those events again)."""
        if self.status.held_by != self.owner or self.status.saved >= self.status.cursor:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._save()

    async def _release(self) -> None:
        """Give the lease up (a node that stops lets another take over at once); best effort:
        one that cannot runs out after ``lease_s``."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._cursors.release(self.name, self.owner)

    async def _deliver_all(self) -> None:
        cursor: Cursor = await self._store(
            lambda: self._cursors.open(self.name, self.channel.start, self._clock())
        )
        self.status.cursor = self.status.saved = cursor.last_event_id
        self._saved_at = time.monotonic()
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
            if len(page) < PAGE:  # all there is: no count needed
                self.status.lag = len(page)
            else:
                self.status.lag = await self._store(
                    lambda: self._cursors.count_after(self.status.cursor)
                )
            if not page:
                self.status.state = "idle"
                wait_s = self.policy.poll_s
                if self.status.saved < self.status.cursor:
                    wait_s = min(wait_s, self._save_due_in())
                    if wait_s <= 0:
                        await self._save()
                        continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self._wakeup.wait()
                continue
            for event in page:
                if time.monotonic() - self._renewed_at >= self.policy.lease_s * 2 / 3:
                    await self._save()  # renews the lease, or finds it lost, before sending
                if not await self._deliver(event):
                    raise _RefusedError
                self._confirmed(event.id)
                if self._save_due_in() <= 0:
                    await self._save()

    def _confirmed(self, event_id: int) -> None:
        self.status.cursor = event_id
        self.status.delivered += 1
        self.status.lag = max(self.status.lag - 1, 0)
        self.status.refusal = None

    def _save_due_in(self) -> float:
        """Seconds until the confirmed cursor is to be written (0 or less: now)."""
        return self._saved_at + self.policy.cursor_every_s - time.monotonic()

    async def _save(self) -> None:
        """Write the confirmed cursor and renew the lease (``LeaseLostError`` when another
        node holds it), retried while the store is down."""
        await self._store(functools.partial(self._advance, self.status.cursor))

    async def _advance(self, event_id: int) -> None:
        now, writing = self._clock(), time.monotonic()
        await self._cursors.advance(
            self.name, event_id, now, owner=self.owner, lease_until=now + self._lease
        )
        self.status.saved = max(self.status.saved, event_id)
        self._saved_at = self._renewed_at = writing

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
            if self.status.saved < self.status.cursor:
                await self._save()  # what was confirmed before this one, before a long wait
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
