"""One message in: decode, validate, de-duplicate, store, evaluate rules, hand alerts on.

A message is one unit of work. ``IngestPipeline.handle(topic, payload)`` never raises: what
goes wrong is classified. Bad input is dead-lettered with a reason and a counter. A refusal
downstream (a ``ValueError``: the time-series store answers 4xx, the center refuses an alert) is
dead-lettered too. A transient failure (``ConnectionError``, ``TimeoutError``, ``OSError``: a
store or the dead-letter file unavailable) is retried with backoff, in place, while the
``citysense_ingest_stalled`` gauge says so: nothing further is taken, nothing is acknowledged
(the consumer acknowledges a group only after ``commit``), and the broker holds the rest. Any
other exception is a bug: logged with its traceback, dead-lettered as ``internal_error``, and the
next message is processed. ``handle_group`` handles messages and then ``commit``s: the sinks are
flushed and the journal (write-ahead log of accepted messages) is made durable.

Four channels are read: telemetry, state (birth/death), gaps (a station's ``GapReport``) and ack
(its ``CommandAck``). Gap reports and answers go to the gap tracker (``ingest/gaps.py``) and to the
journal, like births, so a restart replays them; ``request_resends`` asks stations for what is
still missing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from ingest.dedup import Deduplicator
from ingest.errors import PermanentSinkError, TransientSinkError
from ingest.gaps import GapTracker
from ingest.metrics import IngestMetrics
from ingest.ports import AlertHandler, CommandPublisher, DeadLetterSink, ReadingSink
from ingest.registry import RegistryConflict, StationRegistry
from ingest.shadow import Shadow
from protocol import (
    BatchView,
    Channel,
    CommandAck,
    ConfigAck,
    GapReport,
    PayloadError,
    ResendRequest,
    StationState,
    StationTopic,
    TelemetryDecoder,
    TopicError,
    decode_any_ack,
    decode_gap,
    decode_state,
)
from protocol.backoff import Backoff
from rules import Alert, RuleEngine

TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    OSError,
    TransientSinkError,
)
"""Failures worth waiting out: retried in place, never dead-lettered."""
T = TypeVar("T")
READ_CHANNELS = frozenset({Channel.TELEMETRY, Channel.STATE, Channel.GAPS, Channel.ACK})
"""What stations publish; ``cmd`` is ingest's own, to them."""
YIELD_EVERY_S = 0.005
"""``handle_messages`` lets the event loop run at least this often. Handling a group of 500
100-reading messages is ~150 ms of Python that awaits nothing that suspends; without a turn
for the loop, the commit in flight (sink posts and the journal's fsync run on threads, but
each step's continuation runs on the loop) advanced one step per group, the next group then
waited for it and the loop idled a fifth of the time (and the HTTP API and the SSE stream
waited out whole groups). With a turn every 5 ms: 0.80 → 0.95 of a core, 225–235k →
259–281k readings/s (docs/benchmarks.md)."""


class Journal(Protocol):
    """Where accepted messages are kept, in order, before they are acknowledged (the recorder,
    ``ingest.sinks.recorder.RecorderSink``)."""

    async def write_message(self, topic: str, payload: bytes, received_at: datetime) -> None: ...

    async def flush(self) -> Any:
        """Make what was written durable; returns the position after it (``file``, ``offset``)."""
        ...

    @property
    def end(self) -> Any:
        """The position after the last record written, durable or not (``None``: no file)."""
        ...


log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class IngestPipeline:
    def __init__(
        self,
        *,
        engine: RuleEngine,
        alerts: AlertHandler,
        dead_letters: DeadLetterSink,
        sinks: Sequence[ReadingSink] = (),
        registry: StationRegistry | None = None,
        dedup: Deduplicator | None = None,
        gaps: GapTracker | None = None,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        journal: Journal | None = None,
    ) -> None:
        self.engine = engine
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.sinks = tuple(sinks)
        self.registry = registry or StationRegistry()
        self.dedup = dedup or Deduplicator()
        self.gaps = gaps if gaps is not None else GapTracker()
        self.metrics = metrics or IngestMetrics()
        self.clock = clock
        self.sleep = sleep
        self.journal = journal
        self.decode_telemetry = TelemetryDecoder()
        """``protocol.decode_telemetry`` with its fast path (``protocol.fast``)."""
        self.replaying = False
        """True while the journal is replayed after a restart: nothing is written to it."""
        self.clock_override: datetime | None = None
        """The receive time to use instead of the clock (a replay uses the journal's)."""
        self.stalled: set[str] = set()
        """Dependencies ingest is waiting for right now (nothing is acknowledged meanwhile)."""
        self.last_position: Any = None
        self._paused_since: datetime | None = None
        """When ``request_resends`` last found ingest stalled (None: not stalled)."""
        """The journal position after the last commit."""
        self.rules_version: int | None = None
        """The running rule set's version (``ingest.rules_control``), given to every alert."""
        self.shadow: Shadow | None = None
        """A candidate rule set evaluated beside the engine, opening nothing (``ingest.shadow``)."""
        self._committing = asyncio.Lock()
        self.defer_alerts = False
        """False: ``handle`` returns once its alerts are handed on. True (the consumer): they
        are handed on by a task of their own, in order, while the next messages are handled,
        and ``commit`` waits for them, so nothing is acknowledged before its cases are written
        and a slow case store does not hold up decoding, storing and evaluating."""
        self._delivering: asyncio.Task[None] | None = None
        self._queued: list[tuple[Alert, datetime]] = []
        """Alerts waiting for ``_delivering`` (``defer_alerts``), with their receive times."""
        self.evaluating = asyncio.Lock()
        """Held while a message (or the consumer's group) is handled (checkpoints wait)."""
        self._received = {c: self.metrics.messages.labels(c.value) for c in Channel}
        self.engine.set_locator(self.registry.location, self.registry.district)
        self.metrics.watch_engine(self.engine)
        self.metrics.watch_dedup(self.dedup)
        self.metrics.watch_gaps(self.gaps)
        self.registry.watch_losses(self.gaps.lost_readings)

    def replace_engine(self, engine: RuleEngine) -> None:
        """Run ``engine`` from the next message on (a rules reload: hold ``evaluating``)."""
        engine.set_locator(self.registry.location, self.registry.district)
        self.engine = engine
        self.metrics.watch_engine(engine)

    async def handle_group(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Handle messages in order, then ``commit``: after this they may be acknowledged."""
        await self.handle_messages(messages)
        await self.commit()

    async def handle_messages(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Handle messages in order; they may be acknowledged after the next ``commit``. One
        hold of ``evaluating`` for the whole group: a checkpoint or a rules reload waits for
        the group, not for each message."""
        now = time.monotonic
        async with self.evaluating:
            turn = now() + YIELD_EVERY_S
            for topic, payload in messages:
                received_at = self.clock_override or self.clock()
                try:
                    await self._handle(topic, payload, received_at)
                except Exception as exc:  # a bug: keep the message, keep going
                    await self._internal_error(topic, payload, exc, received_at)
                if now() >= turn:
                    await asyncio.sleep(0)  # the loop's turn (see YIELD_EVERY_S)
                    turn = now() + YIELD_EVERY_S

    async def commit(self) -> Any:
        """Flush the sinks and make the journal durable, retrying while that fails; returns the
        journal position after it (None without a journal). Commits run one at a time, in the
        order they were called; each covers every message handled before it was called."""
        async with self._committing:
            return await self._commit()

    async def _commit(self) -> Any:
        await self.alerts_handed_on()
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                await self._retry("sink", flush)
        journal = self.journal
        if journal is not None and not self.replaying:
            self.last_position = await self._retry("journal", journal.flush)
        return self.last_position

    def journal_end(self) -> Any:
        """The journal position after every message handled so far: durable once a ``commit``
        called after this returns (the last commit's position without a journal file)."""
        journal = self.journal
        end = None if journal is None or self.replaying else journal.end
        return self.last_position if end is None else end

    async def handle(self, topic: str, payload: bytes) -> None:
        received_at = self.clock_override or self.clock()
        try:
            async with self.evaluating:
                await self._handle(topic, payload, received_at)
        except Exception as exc:  # a bug: keep the message, keep going
            await self._internal_error(topic, payload, exc, received_at)

    async def _internal_error(
        self, topic: str, payload: bytes, exc: Exception, received_at: datetime
    ) -> None:
        log.exception("internal error on a message on %s", topic, exc_info=exc)
        self.metrics.rejected.labels("internal_error").inc()
        await self._dead_letter(topic, payload, "internal_error", repr(exc), received_at)

    async def _handle(self, topic: str, payload: bytes, received_at: datetime) -> None:
        try:
            station_topic = StationTopic.parse(topic)
            if station_topic.channel not in READ_CHANNELS:
                raise TopicError(f"ingest does not read {station_topic.channel} topics")
        except TopicError as exc:
            await self._reject(topic, payload, PayloadError("bad_topic", str(exc)), received_at)
            return
        channel = station_topic.channel
        self._received[channel].inc()
        try:  # the effects raise no PayloadError: only decoding does
            if channel is Channel.TELEMETRY:
                batch = self.decode_telemetry(station_topic, payload)
                await self._accept(topic, payload, batch, received_at)
            elif channel is Channel.STATE:
                await self._state(topic, payload, decode_state(station_topic, payload), received_at)
            elif channel is Channel.GAPS:
                await self._gap_report(
                    topic, payload, decode_gap(station_topic, payload), received_at
                )
            else:
                answer = decode_any_ack(station_topic, payload)
                if isinstance(answer, ConfigAck):
                    await self._config_answer(topic, payload, answer, received_at)
                else:
                    await self._answer(topic, payload, answer, received_at)
        except PayloadError as exc:
            await self._reject(topic, payload, exc, received_at)

    async def _gap_report(
        self, topic: str, payload: bytes, report: GapReport, received_at: datetime
    ) -> None:
        if not self.gaps.report(report, received_at):
            return  # announced again: counted as a repeat, not journaled
        await self._journal(topic, payload, received_at)
        log.warning(
            "station %s gave up %d readings (%s; batches %s..%s)",
            report.station_id,
            report.readings,
            report.reason,
            report.first_seq,
            report.last_seq,
        )

    async def _config_answer(
        self, topic: str, payload: bytes, ack: ConfigAck, received_at: datetime
    ) -> None:
        """A station says what it did with a pushed config: counted, journaled, logged."""
        self.metrics.config_answers.labels(ack.status).inc()
        await self._journal(topic, payload, received_at)
        log.info(
            "station %s: config %s %s (in force: %d)%s",
            ack.station_id,
            ack.offered_version,
            ack.status,
            ack.config_version,
            f": {ack.reason}" if ack.reason else "",
        )

    async def _answer(
        self, topic: str, payload: bytes, ack: CommandAck, received_at: datetime
    ) -> None:
        self.gaps.answer(ack, received_at)
        await self._journal(topic, payload, received_at)

    async def _state(
        self, topic: str, payload: bytes, state: StationState, received_at: datetime
    ) -> None:
        try:
            self.registry.update(state, received_at)
        except RegistryConflict as conflict:
            self.metrics.rejected.labels(conflict.reason).inc()
            log.warning("birth on %s refused: %s", topic, conflict.detail)
            await self._dead_letter(topic, payload, conflict.reason, conflict.detail, received_at)
            return
        await self._journal(topic, payload, received_at)
        if state.status == "online":
            self.engine.note_birth(state.station_id, state.ts)
            if self.shadow is not None:
                self.shadow.note_birth(state.station_id, state.ts)

    async def _journal(self, topic: str, payload: bytes, received_at: datetime) -> None:
        journal = self.journal
        if journal is not None and not self.replaying:
            try:  # the first attempt inline: per message, a retry wrapper cost ~1 us
                await journal.write_message(topic, payload, received_at)
            except TRANSIENT as exc:
                write = partial(journal.write_message, topic, payload, received_at)
                await self._retry("journal", write, exc)

    async def _accept(
        self, topic: str, payload: bytes, batch: BatchView, received_at: datetime
    ) -> None:
        if self.dedup.seen(batch.station_id, batch.boot_epoch, batch.seq):
            self.metrics.duplicates.inc()
            return
        foreign, unregistered = self.registry.screen(batch.station_id, batch.readings)
        if foreign is not None:  # a sensor another station's birth registered
            owner = self.registry.owner(foreign)
            detail = f"sensor {foreign} belongs to {owner}, not {batch.station_id}"
            await self._reject(topic, payload, PayloadError("foreign_sensor", detail), received_at)
            return
        await self._journal(topic, payload, received_at)
        for sink in self.sinks:
            try:
                try:
                    await sink.write_batch(batch, received_at)
                except TRANSIENT as exc:
                    await self._retry("sink", partial(sink.write_batch, batch, received_at), exc)
            except (ValueError, PermanentSinkError) as exc:  # refused for good: keep it
                self.metrics.rejected.labels("sink_refused").inc()
                await self._dead_letter(topic, payload, "sink_refused", str(exc), received_at)
        self.registry.saw_batch(batch, received_at)
        self.metrics.batches.inc()
        self.metrics.readings.inc(len(batch.readings))
        if unregistered:
            self.metrics.unregistered.inc(unregistered)
        alerts = self.engine.process(batch.station_id, batch.readings, batch.sent_at)
        if self.shadow is not None:
            self.shadow.observe(batch.station_id, batch.readings, batch.sent_at, alerts)
        await self._deliver_all(alerts, received_at)
        self.dedup.remember(batch.station_id, batch.boot_epoch, batch.seq)
        self.gaps.saw(batch.station_id, batch.boot_epoch, batch.seq, received_at)

    async def request_resends(
        self, commands: CommandPublisher, now: datetime | None = None
    ) -> list[ResendRequest]:
        """Ask stations for the batches missing longer than the tracker's ``resend_after``;
        returns the requests. One that cannot be handed over now is asked again after the
        tracker's backoff, like one the station did not answer. Nothing is asked while ingest is
        stalled, and the time it was stalled is added to every deadline: the batches the broker
        holds meanwhile may fill the gaps."""
        now = now or self.clock()
        if self.stalled:
            self._paused_since = self._paused_since or now
            return []
        if self._paused_since is not None:
            self.gaps.postpone(max(0.0, (now - self._paused_since).total_seconds()))
            self._paused_since = None
        requests = self.gaps.due(now)
        for request in requests:
            try:
                await commands.send_command(request)
            except ConnectionError as exc:
                log.warning("re-send request to %s not sent: %s", request.station_id, exc)
        return requests

    async def drain(self, received_at: datetime | None = None) -> None:
        """Evaluate what the reorder buffers still hold (end of a backtest, clean shutdown)."""
        async with self.evaluating:
            await self._deliver_all(self.engine.drain(), received_at or self.clock())
        await self.alerts_handed_on()

    async def alerts_handed_on(self) -> None:
        """Wait until every alert so far is handed on (``defer_alerts``)."""
        delivering = self._delivering
        if delivering is not None:
            await delivering
            if self._delivering is delivering:
                self._delivering = None

    async def _deliver_all(self, alerts: Sequence[Alert], received_at: datetime) -> None:
        if not alerts:
            return
        for alert in alerts:
            self.metrics.alerts.labels(alert.rule_id, alert.state).inc()
        if not self.defer_alerts:
            for alert in alerts:
                await self._deliver(alert, received_at)
            return
        self._queued.extend((alert, received_at) for alert in alerts)
        if self._delivering is None or self._delivering.done():
            self._delivering = asyncio.create_task(self._deliver_queued(), name="ingest-alerts")

    async def _deliver_queued(self) -> None:
        """Hand on the queued alerts, in order, all that queued up meanwhile at a time (one
        transaction of the center's for them: ``_deliver_batch``), until none is left."""
        while self._queued:
            batch, self._queued = self._queued, []
            await self._deliver_batch(batch)

    async def _deliver_batch(self, batch: list[tuple[Alert, datetime]]) -> None:
        handle_alerts = getattr(self.alerts, "handle_alerts", None)
        if handle_alerts is None:
            for alert, received_at in batch:
                await self._deliver_logged(alert, received_at)
            return
        items = [
            (self._versioned(alert), self.registry.sensor(alert.sensor_id), received_at)
            for alert, received_at in batch
        ]
        try:
            refusals = await self._retry("center", lambda: handle_alerts(items))
        except Exception:  # unexpected: one at a time, so that only the bad one is kept aside
            log.exception("%d alerts not handed on together; one at a time", len(items))
            for alert, received_at in batch:
                await self._deliver_logged(alert, received_at)
            return
        for (alert, _, received_at), refusal in zip(items, refusals, strict=True):
            if refusal is not None:
                try:
                    await self._keep_refused(alert, "alert_refused", str(refusal), received_at)
                except Exception:  # a bug (the dead-letter store's): the others still go
                    self._not_handed_on(alert)

    async def _deliver_logged(self, alert: Alert, received_at: datetime) -> None:
        try:
            await self._deliver(alert, received_at)
        except Exception:  # a bug (the dead-letter store's): keep going, counted
            self._not_handed_on(alert)

    def _not_handed_on(self, alert: Alert) -> None:
        log.exception("alert %s on %s not handed on", alert.rule_id, alert.sensor_id)
        self.metrics.rejected.labels("internal_error").inc()

    def _versioned(self, alert: Alert) -> Alert:
        if self.rules_version is not None and alert.rules_version is None:
            return replace(alert, rules_version=self.rules_version)
        return alert

    async def _deliver(self, alert: Alert, received_at: datetime) -> None:
        """Hand an alert on, retrying while the center is unavailable; an alert the center
        refuses, or that fails in an unexpected way, is counted and kept as a dead letter."""
        sensor = self.registry.sensor(alert.sensor_id)
        alert = self._versioned(alert)
        try:
            await self._retry(
                "center", lambda: self.alerts.handle_alert(alert, sensor, received_at)
            )
            return
        except ValueError as exc:
            reason, detail = "alert_refused", str(exc)
        except Exception as exc:
            log.exception("alert %s on %s failed", alert.rule_id, alert.sensor_id)
            reason, detail = "alert_failed", repr(exc)
        await self._keep_refused(alert, reason, detail, received_at)

    async def _keep_refused(
        self, alert: Alert, reason: str, detail: str, received_at: datetime
    ) -> None:
        self.metrics.alerts_refused.inc()
        log.error("alert kept as a dead letter (%s: %s): %s", reason, detail, alert)
        await self._retry(
            "dead_letters",
            partial(self.dead_letters.put_alert, alert, reason, detail, received_at),
        )

    async def _retry(
        self, what: str, attempt: Callable[[], Any], failed: BaseException | None = None
    ) -> Any:
        """Run ``attempt`` (sync or async) until it stops failing transiently; ``failed``: the
        caller's own first attempt failed so (the first retry waits its backoff)."""
        backoff: Backoff | None = None  # made on the first failure (seeding its RNG costs)
        stalled = False
        try:
            while True:
                try:
                    if failed is not None:
                        exc, failed = failed, None
                        raise exc
                    result = attempt()
                    if inspect.isawaitable(result):
                        result = await result
                    return result
                except TRANSIENT as exc:
                    if not stalled:
                        stalled = True
                        self.stalled.add(what)
                        self.metrics.stalled.labels(what).set(1)
                    self.metrics.retries.labels(what).inc()
                    if what == "center":
                        self.metrics.alert_retries.inc()
                    backoff = backoff or Backoff(initial=0.2, maximum=10.0)
                    delay = backoff.next_delay()
                    log.warning("%s unavailable (%s); retrying in %.1fs", what, exc, delay)
                    await self.sleep(delay)
        finally:
            if stalled:
                self.stalled.discard(what)
                self.metrics.stalled.labels(what).set(0)

    async def _dead_letter(
        self, topic: str, payload: bytes, reason: str, detail: str, received_at: datetime
    ) -> None:
        await self._retry(
            "dead_letters",
            partial(self.dead_letters.put, topic, payload, reason, detail, received_at),
        )

    async def _reject(
        self, topic: str, payload: bytes, error: PayloadError, received_at: datetime
    ) -> None:
        self.metrics.rejected.labels(error.reason).inc()
        log.warning("rejected message on %s: %s", topic, error)
        await self._dead_letter(topic, payload, error.reason, error.detail, received_at)
