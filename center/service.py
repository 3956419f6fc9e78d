"""The port ingest calls (an alert in, a stored case and its events out), and the one the API
calls to move a case through its lifecycle.

Every write and the publishing of its events happen under one lock, so live subscribers get
events in id order: the stream can then skip what it already replayed by id alone.

Events other processes write into the same store (another node, the CLI) reach this node's
live subscribers too, in the same order: ``follow_log`` reads the log every ``every_s`` and
publishes what is new, and a write of this node that finds such events before its own
(its first id is not the next one) publishes them first, from the log. Event ids are handed
out in commit order (SQLite has one writer; PostgreSQL writers take ``EVENT_LOCK``), so
"published up to id n" is all a node needs to remember.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from center.broadcast import CaseBroadcaster
from center.case_log import CaseChange
from center.errors import AlertRejectedError, StoreError
from center.lifecycle import Action, Step
from center.schemas import CaseEvent, CaseOut
from center.store import CaseStore
from protocol import SensorInfo
from rules.alerts import Alert

log = logging.getLogger(__name__)

FOLLOW_PAGE = 500


@dataclass(slots=True)
class CaseStats:
    """What became of the alerts handed to the service."""

    opened: int = 0
    duplicates: int = 0
    cleared: int = 0
    members: int = 0
    reopened: int = 0
    unmatched_clears: int = 0
    unmatched_changes: int = 0
    rejected: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CaseService:
    """Turn alerts into cases and move cases: store first, then tell live subscribers."""

    def __init__(
        self,
        store: CaseStore,
        broadcaster: CaseBroadcaster,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.stats = CaseStats()
        self.clock = clock
        self.escalated = 0
        """Escalations written (``escalated`` events): acknowledgement deadlines missed."""
        self._writes = asyncio.Lock()
        self._published: int | None = None
        """The highest event id published to live subscribers (``None``: none yet)."""

    async def _publish(self, change: CaseChange) -> None:
        """Publish a change's events (under ``_writes``), after any another process wrote
        before them."""
        events = change.events
        if not events:
            return
        if self._published is not None and events[0].id > self._published + 1:
            try:  # a gap: other writers' events (or ids a rolled-back transaction took)
                events = await self._logged_after(self._published, up_to=events[-1].id)
            except StoreError as exc:  # written, not yet published: ours at least
                log.warning("events before %d not read (%s): not published live", events[0].id, exc)
        self._send(events)

    def _send(self, events: Sequence[CaseEvent]) -> int:
        """Publish the events not published yet; how many."""
        sent = 0
        for event in events:
            if self._published is None or event.id > self._published:
                self.broadcaster.publish(event)
                self._published = event.id
                sent += 1
        return sent

    async def _logged_after(self, after: int, up_to: int | None = None) -> list[CaseEvent]:
        """The log's events after ``after`` (up to ``up_to``), in id order."""
        found: list[CaseEvent] = []
        while True:
            page = await self.store.events_after(after, FOLLOW_PAGE)
            found += [event for event in page if up_to is None or event.id <= up_to]
            if len(page) < FOLLOW_PAGE or (up_to is not None and page[-1].id >= up_to):
                return found
            after = page[-1].id

    async def follow_log(self, every_s: float) -> None:
        """Every ``every_s``, publish the events other processes wrote since the last one
        published, until cancelled; a store that is down is logged and tried again."""
        while True:
            try:
                await self.follow_once()
            except StoreError as exc:
                log.warning("case event log not followed: %s", exc)
            await asyncio.sleep(every_s)

    async def follow_once(self) -> int:
        """Publish what other processes wrote since the last event published (the first call
        only notes where the log ends); how many events were published."""
        if self._published is None:
            newest = await self.store.newest_event_id()
            async with self._writes:
                if self._published is None:
                    self._published = newest
            return 0
        # read outside the lock (a case write must not wait for it), publish under it: a write
        # meanwhile publishes the same events first, and they are not sent twice
        events = await self._logged_after(self._published)
        async with self._writes:
            return self._send(events)

    async def transition(
        self,
        case_id: int,
        *,
        action: Action | None = None,
        to: Step | None = None,
        actor: str,
        note: str = "",
    ) -> CaseOut:
        """Move a case (see ``CaseStore.transition``) now, and publish its event."""
        async with self._writes:
            change = await self.store.transition(
                case_id, action=action, to=to, actor=actor, note=note, at=self.clock()
            )
            await self._publish(change)
        log.info("case %d: %s by %s, now at %s", case_id, action or to, actor, change.case.step)
        return change.case

    async def escalate_due(self) -> int:
        """Escalate every dispatched case whose acknowledgement deadline has passed by the
        service's clock, and publish the ``escalated`` events; how many were escalated."""
        escalated = 0
        while True:
            async with self._writes:
                changes = await self.store.escalate_due(self.clock())
                for change in changes:
                    await self._publish(change)
            for change in changes:
                case = change.case
                log.warning(
                    "case %d escalated: %s %s not taken on in time, priority %d (%d so far)",
                    case.id,
                    case.severity,
                    case.class_code,
                    case.priority,
                    case.escalations,
                )
            escalated += len(changes)
            self.escalated += len(changes)
            if not changes:
                return escalated

    async def watch_deadlines(self, every_s: float) -> None:
        """Escalate overdue cases every ``every_s`` seconds until cancelled; a store that is
        down is logged and tried again at the next tick."""
        while True:
            try:
                await self.escalate_due()
            except StoreError as exc:
                log.warning("acknowledgement deadlines not checked: %s", exc)
            await asyncio.sleep(every_s)

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None:
        """Record one alert transition.

        ``sensor`` is the registry's entry for ``alert.sensor_id`` (``None`` if unknown);
        ``detected_at`` is the wall time ingest saw the readings. Raises ``AlertRejectedError``
        for an alert that cannot become a case and ``StoreError`` when the store fails (the
        caller should not acknowledge the readings then: the retried alert is de-duplicated).
        """
        try:
            async with self._writes:
                change = await self.store.apply_alert(alert, sensor, detected_at)
                if change is not None:
                    await self._publish(change)
        except AlertRejectedError as exc:
            self.stats.rejected += 1
            log.error("alert %s on %s rejected: %s", alert.rule_id, alert.sensor_id, exc)
            raise
        self._count(alert, None if change is None else change.case)

    async def handle_alerts(
        self, alerts: Sequence[tuple[Alert, SensorInfo | None, datetime]]
    ) -> list[AlertRejectedError | None]:
        """``handle_alert`` for each (alert, sensor, detected at), in order, written in one
        transaction (``CaseStore.apply_alerts``); an alert that cannot become a case is refused
        alone: its ``AlertRejectedError`` in its place, ``None`` for each one recorded. Raises
        ``StoreError`` when the store fails (none is written then)."""
        async with self._writes:
            outcomes = await self.store.apply_alerts(alerts)
            for outcome in outcomes:
                if outcome is not None and not isinstance(outcome, AlertRejectedError):
                    await self._publish(outcome)
        refused: list[AlertRejectedError | None] = []
        for (alert, _, _), outcome in zip(alerts, outcomes, strict=True):
            if isinstance(outcome, AlertRejectedError):
                self.stats.rejected += 1
                log.error("alert %s on %s rejected: %s", alert.rule_id, alert.sensor_id, outcome)
                refused.append(outcome)
            else:
                self._count(alert, None if outcome is None else outcome.case)
                refused.append(None)
        return refused

    def _count(self, alert: Alert, case: CaseOut | None) -> None:
        if alert.state == "open":
            if case is None:
                self.stats.duplicates += 1
                log.debug("duplicate alert %s on %s", alert.rule_id, alert.sensor_id)
                return
            self.stats.opened += 1
            log.info(
                "case %d opened: %s %s, at %s%s",
                case.id,
                case.class_code,
                case.title,
                case.step,
                " (detected late)" if case.detected_late else "",
            )
            return
        if alert.state in ("member", "flapping"):
            if case is None:
                self.stats.unmatched_changes += 1
                log.info(
                    "%s alert %s on %s has no case", alert.state, alert.rule_id, alert.sensor_id
                )
            elif alert.state == "member":
                self.stats.members += 1
                log.info("case %d: %s joined", case.id, alert.member_id)
            else:
                self.stats.reopened += 1
                log.info("case %d re-opened: flapping, at %s", case.id, case.step)
            return
        if case is None:
            self.stats.unmatched_clears += 1
            log.info("cleared alert %s on %s has no open case", alert.rule_id, alert.sensor_id)
            return
        self.stats.cleared += 1
        log.info("case %d: sensor recovered, awaiting verification at %s", case.id, case.step)
