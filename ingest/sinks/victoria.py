"""Telemetry into VictoriaMetrics (or any InfluxDB v2 write API) through ``influxdb-client``.

Readings are buffered as line protocol (``ingest.sinks.lines``) and posted in chunks of about
``batch_points`` points, gzip-compressed, to ``/api/v2/write`` (VictoriaMetrics ignores org,
bucket and token). The client is the library's synchronous ``WriteApi`` run on one dedicated
worker thread: the event loop only awaits it, and the library's level-9 gzip runs off the loop
(its async client compresses on the loop: see ``docs/sinks.md`` for the measurements).

Contract (the consumer acknowledges MQTT messages only after ``flush()`` returned):

- ``write_batch`` buffers the batch; full chunks (or everything, once the oldest buffered point
  waited ``flush_interval_s``) are posted by a background task while ingest goes on handling
  messages, so the event loop never waits for a round trip to the store, only for buffer room
  (past ``max_buffered_points`` it flushes first). A background post that failed raises from
  the next ``write_batch`` or ``flush``. When ``write_batch`` raises, the sink does not hold
  that batch: the caller redelivers it. Batches buffered earlier stay buffered.
- ``flush`` posts everything buffered when it was called (not what is written meanwhile); when
  it returns, the store has accepted it all.
- 429, 5xx, timeouts and connection errors are retried with jittered exponential backoff,
  honouring ``Retry-After``; when the attempts are spent, ``TransientSinkError`` (nothing is
  dropped: the next ``flush`` tries again). Any other 4xx is ``PermanentSinkError`` naming the
  refused batches, which the sink then no longer holds.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import urllib3.exceptions
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from ingest.errors import BatchKey, PermanentSinkError, TransientSinkError
from ingest.sinks.lines import LineFormatter, batch_line
from protocol import BatchView
from protocol.backoff import Backoff

log = logging.getLogger(__name__)

SINK: Final = "victoria"
ORG: Final = "citysense"
BUCKET: Final = "citysense"
"""VictoriaMetrics ignores org and bucket; an InfluxDB 2.x behind the same API would use them."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one chunk is retried before ``TransientSinkError``."""

    attempts: int = 5
    initial_s: float = 0.5
    maximum_s: float = 10.0
    max_retry_after_s: float = 60.0
    """A ``Retry-After`` longer than this is not slept through: the caller gets the error
    (with ``retry_after``) at once and backs off itself."""


@dataclass(eq=False, slots=True)
class _Pending:
    """One batch's lines waiting in the buffer (compared by identity)."""

    batch: tuple[str, int, int]
    """Its ``BatchKey`` fields (the key itself is made only for a refusal: 0.4 µs a batch)."""
    lines: list[str]
    since: float
    serial: int
    """Its place in the order of ``write_batch`` calls (``flush`` sends up to a serial)."""


@dataclass(slots=True)
class SinkStats:
    points_written: int = 0
    chunks_written: int = 0
    retries: int = 0
    points_refused: int = 0
    transient_failures: int = 0


@dataclass
class VictoriaSink:
    url: str
    token: str | None = None
    batch_points: int = 20_000
    max_buffered_points: int = 200_000
    flush_interval_s: float = 1.0
    timeout_s: float = 10.0
    gzip: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    stats: SinkStats = field(default_factory=SinkStats)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_points <= self.max_buffered_points:
            raise ValueError(f"need 1 <= {self.batch_points=} <= {self.max_buffered_points=}")
        self._client = InfluxDBClient(
            url=self.url.rstrip("/"),
            token=self.token or "",  # VictoriaMetrics ignores it; none sends no header
            org=ORG,
            enable_gzip=self.gzip,
            timeout=int(self.timeout_s * 1000),
            retries=False,  # retried here, where Retry-After and our backoff apply
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="victoria-write")
        self._pending: deque[_Pending] = deque()
        self._points = 0
        self._sending = asyncio.Lock()
        self._poster: asyncio.Task[None] | None = None
        self._serial = 0
        self._lines = LineFormatter()

    @property
    def pending_points(self) -> int:
        """Points buffered and not yet accepted by the store."""
        return self._points

    async def write_batch(self, batch: BatchView, received_at: datetime) -> None:
        self._collect_poster()
        lines = self._lines.reading_lines(batch)
        lines.append(batch_line(batch, received_at))
        if self._points + len(lines) > self.max_buffered_points:
            await self.flush()
            if self._points + len(lines) > self.max_buffered_points:
                raise TransientSinkError(
                    SINK, f"buffer full ({self._points} points) while the store catches up"
                )
        self._serial += 1
        ident = (batch.station_id, batch.boot_epoch, batch.seq)
        self._pending.append(_Pending(ident, lines, self.monotonic(), self._serial))
        self._points += len(lines)
        if self._points >= self.batch_points:
            self._start_poster(everything=False)
        elif self.monotonic() - self._pending[0].since >= self.flush_interval_s:
            self._start_poster(everything=True)

    async def idle(self) -> None:
        """Wait until no background post runs (its failure, if any, is raised by the next
        ``write_batch`` or ``flush``)."""
        poster = self._poster
        if poster is not None:
            await asyncio.wait([poster])

    def _start_poster(self, *, everything: bool) -> None:
        if self._poster is None:
            self._poster = asyncio.create_task(self._send(everything=everything))

    def _collect_poster(self, *, transient_ok: bool = False) -> None:
        """Raise what the finished background post raised (once); ``transient_ok``: not a
        transient failure, whose chunk is still held and goes with the caller's send."""
        poster = self._poster
        if poster is not None and poster.done():
            self._poster = None
            try:
                poster.result()
            except TransientSinkError:
                if not transient_ok:
                    raise

    async def flush(self) -> None:
        """Post everything buffered when called; returns once the store accepted all of it.
        It takes turns with the background post chunk by chunk and does not wait for what is
        written meanwhile (ingest goes on handling the next group while a commit flushes)."""
        upto = self._serial
        self._collect_poster(transient_ok=True)
        await self._send(everything=True, upto=upto)
        self._collect_poster(transient_ok=True)  # a refusal of some of these batches

    async def aclose(self) -> None:
        """Flush, then close the HTTP pool and the worker thread (also when the flush fails)."""
        try:
            await self.idle()
            await self.flush()
        finally:
            if self._poster is not None and not self._poster.done():  # cancelled meanwhile
                self._poster.cancel()
            if self._points:
                log.warning("closing with %d points not accepted by the store", self._points)
            self._client.close()  # type: ignore[no-untyped-call]
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, *, everything: bool, upto: int | None = None) -> None:
        """Post chunks while a full one is buffered (``everything``: while anything is), up to
        serial ``upto`` when given. One chunk at a time under the lock, so a flush and the
        background post take turns, front to back."""
        while self._due(everything, upto):  # checked before queueing for the lock, too
            async with self._sending:
                if not self._due(everything, upto):
                    return
                chunk = self._take_chunk()
                lines = [line for entry in chunk for line in entry.lines]
                try:
                    await self._post(lines)
                except PermanentSinkError as exc:
                    self._release(chunk)
                    self.stats.points_refused += len(lines)
                    keys = tuple(BatchKey(*entry.batch) for entry in chunk)
                    raise PermanentSinkError(SINK, exc.reason, exc.detail, keys) from None
                except TransientSinkError:
                    self.stats.transient_failures += 1
                    raise
                self._release(chunk)
                self.stats.points_written += len(lines)
                self.stats.chunks_written += 1

    def _due(self, everything: bool, upto: int | None) -> bool:
        pending = self._pending
        if not pending or (upto is not None and pending[0].serial > upto):
            return False
        return everything or self._points >= self.batch_points

    def _take_chunk(self) -> list[_Pending]:
        """Whole batches from the front, about ``batch_points`` points (at least one batch)."""
        chunk: list[_Pending] = []
        points = 0
        for entry in self._pending:
            if chunk and points + len(entry.lines) > self.batch_points:
                break
            chunk.append(entry)
            points += len(entry.lines)
        return chunk

    def _release(self, entries: list[_Pending]) -> None:
        gone = {id(entry) for entry in entries}
        kept = [entry for entry in self._pending if id(entry) not in gone]
        self._pending = deque(kept)
        self._points = sum(len(entry.lines) for entry in kept)

    async def _post(self, lines: list[str]) -> None:
        backoff: Backoff | None = None  # made on the first failure (seeding its RNG costs)
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await loop.run_in_executor(self._executor, self._post_now, lines)
                return
            except ApiException as exc:
                status = int(exc.status or 0)
                detail = _detail(exc)
                if status != 429 and status < 500:
                    raise PermanentSinkError(SINK, f"http_{status}", detail) from None
                retry_after = parse_retry_after(exc.retry_after, datetime.now(UTC))
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                detail, retry_after = f"{type(exc).__name__}: {exc}", None
            if attempt == self.retry.attempts or (
                retry_after is not None and retry_after > self.retry.max_retry_after_s
            ):
                raise TransientSinkError(
                    SINK,
                    f"{detail} (gave up after {attempt} attempts)",
                    attempts=attempt,
                    retry_after=retry_after,
                )
            backoff = backoff or Backoff(initial=self.retry.initial_s, maximum=self.retry.maximum_s)
            delay = retry_after if retry_after is not None else backoff.next_delay()
            self.stats.retries += 1
            log.warning("write of %d points failed (%s); retry in %.2fs", len(lines), detail, delay)
            await self.sleep(delay)

    def _post_now(self, lines: list[str]) -> None:
        """Runs on the worker thread: join, gzip (the library) and POST."""
        body = "\n".join(lines)
        # WritePrecision.NS is the plain string "ns", typed by the library as the class itself.
        precision: WritePrecision = WritePrecision.NS  # type: ignore[assignment]
        self._write_api.write(bucket=BUCKET, org=ORG, record=body, write_precision=precision)


def _detail(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    text = str(body).strip() if body else str(exc.reason)
    return f"HTTP {exc.status}: {text[:500]}"


def parse_retry_after(value: object, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
