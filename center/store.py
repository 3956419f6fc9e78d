"""The case store: alerts in, cases out, over an async SQLAlchemy engine (SQLite or PostgreSQL).

Every change writes, in its own transaction, the case, its audit trail (``case_transitions``)
and its events (``case_events``, whose ids the live stream resumes from). Writes are synchronous
SQLAlchemy run as one call (``center.transactions``: on a thread of their own for a SQLite file);
reads go through the async engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from center import lifecycle
from center.case_log import AWAITING, CaseChange, CaseLog, event_from_row
from center.case_query import CaseFilter, order_by
from center.classify import classify
from center.db import CaseEventRow, CaseRow, CaseTransitionRow
from center.errors import AlertRejectedError, CaseNotFoundError, StoreError
from center.escalation import EscalationPolicy, initial_priority
from center.lifecycle import Action, Step
from center.schemas import CaseEvent, CaseOut, TransitionOut
from center.schemas_query import CaseSort
from center.schemas_stats import CaseStatsOut
from center.stats import StatsQuery
from center.transactions import Transactions
from protocol import SensorInfo
from rules.alerts import Alert

ALERT_KEY = ("rule_id", "sensor_id", "started_at")
_OPEN_CASE = {
    name: dialect.insert(CaseRow)
    .on_conflict_do_nothing(index_elements=list(ALERT_KEY))
    .returning(CaseRow)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
"""A case's insert, built once (its values are the execution's parameters): building it with
``values(...)`` for every case cost more than the database's work."""
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
DEFAULT_LATE_AFTER = timedelta(minutes=5)
PURGE_BATCH = 500


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise AlertRejectedError(f"{name} {value.isoformat()} has no timezone")


def _alert_values(alert: Alert, sensor: SensorInfo | None, detected_at: datetime) -> dict[str, Any]:
    """What the alert writes: the new case's row (``open``) or the columns it changes."""
    for name, value in (
        ("detected_at", detected_at),
        ("started_at", alert.started_at),
        ("at", alert.at),
    ):
        _require_aware(name, value)
    if alert.state == "open":
        return _case_values(alert, sensor, detected_at)
    if alert.state == "member":
        return {"members": list(alert.members), "updated_at": detected_at}
    if alert.state == "flapping":
        return {
            "status": "open",
            "cleared_at": None,
            "flapping": True,
            "flags": list(alert.flags),
            "updated_at": detected_at,
        }
    return {
        "status": "cleared",
        "cleared_at": alert.at,
        "updated_at": detected_at,
        # The condition had ended before the center first learned of the case.
        "ended_before_seen": CaseRow.detected_at >= alert.at,
    }


def _case_values(alert: Alert, sensor: SensorInfo | None, detected_at: datetime) -> dict[str, Any]:
    """The row of the case an open alert becomes."""
    if sensor is not None and sensor.sensor_id != alert.sensor_id:
        raise AlertRejectedError(f"sensor {sensor.sensor_id} given for alert on {alert.sensor_id}")
    for point in alert.evidence:
        _require_aware("evidence ts", point.ts)
    case_class = classify(alert, sensor)
    return {
        "rule_id": alert.rule_id,
        "title": alert.title,
        "severity": alert.severity,
        "category": case_class.category,
        "class_code": case_class.code,
        "class_name": case_class.name,
        "major_name": case_class.major_name,
        "station_id": alert.station_id,
        "sensor_id": alert.sensor_id,
        "sensor_kind": alert.kind.value,
        "component_id": sensor.component_id if sensor else None,
        "grid_code": sensor.grid_code if sensor else None,
        "district_code": sensor.component_id[:6] if sensor else None,
        "lon": sensor.lon if sensor else None,
        "lat": sensor.lat if sensor else None,
        "address": sensor.address if sensor else "",
        "status": "open",
        "step": Step.DISCOVER.value,
        "field": alert.field,
        "trigger_value": alert.value,
        "threshold": alert.threshold,
        "started_at": alert.started_at,
        "opened_at": alert.at,
        "cleared_at": None,
        "detected_at": detected_at,
        "updated_at": detected_at,
        "evidence": [
            {"ts": point.ts.astimezone(UTC).isoformat(), "value": point.value}
            for point in alert.evidence
        ],
        "unregistered": sensor is None,
        "members": list(alert.members) or [alert.sensor_id],
        "flags": list(alert.flags),
        "flapping": "flapping" in alert.flags,
        "priority": initial_priority(alert.severity),
        "rules_version": alert.rules_version,
    }


class CaseStore:
    """Cases in a SQL database migrated by ``center.migrate``.

    A duplicate alert (same rule, sensor and start) never becomes a second case; database
    failures surface as ``StoreError``. ``late_after``: a case the center learns of more than
    this after it opened (event time) is ``detected_late`` and not dispatched automatically.
    ``escalation``: the acknowledgement deadlines of dispatched emergencies.
    ``write_on_loop``: on a SQLite file, write transactions run on the event loop, through a
    connection that never waits for a lock, and on a thread of their own when another holds
    it (``center.transactions``). ``write_on_thread``: on a SQLite file (with
    ``write_on_loop=False``), write transactions run on that thread; both ``False`` sends them
    through the async driver statement by statement, as on PostgreSQL (``bench/casewrite.py``
    compares the three).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        late_after: timedelta = DEFAULT_LATE_AFTER,
        escalation: EscalationPolicy | None = None,
        write_on_thread: bool = True,
        write_on_loop: bool = True,
    ) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            raise StoreError(f"case store runs on sqlite or postgresql, not {engine.dialect.name}")
        if late_after <= timedelta(0):
            raise ValueError(f"late_after {late_after} must be positive")
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._transactions = Transactions(engine, on_thread=write_on_thread, on_loop=write_on_loop)
        self.late_after = late_after
        self.escalation = escalation or EscalationPolicy()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"case store: {exc}") from exc

    @property
    def writes_locked_out(self) -> int:
        """Write transactions that found SQLite's lock held by another connection (another
        process) from the event loop and waited for it on the writer thread."""
        return self._transactions.loop_fallbacks

    def close(self) -> None:
        """Refuse new writes; the writer thread (SQLite file) ends after its transaction. The
        engine stays its owner's to dispose."""
        self._transactions.close()

    async def record_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> CaseOut | None:
        """The alert's case after the alert (``apply_alert`` without the events)."""
        change = await self.apply_alert(alert, sensor, detected_at)
        return None if change is None else change.case

    async def apply_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> CaseChange | None:
        """Open, update, re-open or mark recovered the alert's case, with its events (and the
        system's transitions); ``None`` when nothing changed (a duplicate, no such case).
        Raises ``AlertRejectedError`` for an alert that cannot become a case."""
        (outcome,) = await self.apply_alerts([(alert, sensor, detected_at)])
        if isinstance(outcome, AlertRejectedError):
            raise outcome
        return outcome

    async def apply_alerts(
        self, alerts: Sequence[tuple[Alert, SensorInfo | None, datetime]]
    ) -> list[CaseChange | AlertRejectedError | None]:
        """``apply_alert`` for each (alert, sensor, detected at), in order, in one transaction:
        a case is a dozen statements, and the transaction's own round trips (begin, commit,
        PostgreSQL's event lock) are paid once for all. An alert that cannot become a case is
        refused alone (its ``AlertRejectedError`` in its place) and the others are written; a
        failing database fails them all (``StoreError``: none is written)."""
        prepared: list[tuple[Alert, datetime, dict[str, Any]] | AlertRejectedError] = []
        for alert, sensor, detected_at in alerts:
            try:
                prepared.append((alert, detected_at, _alert_values(alert, sensor, detected_at)))
            except AlertRejectedError as exc:
                prepared.append(exc)
        if all(isinstance(item, AlertRejectedError) for item in prepared):
            return [item for item in prepared if isinstance(item, AlertRejectedError)]

        def work(session: Session) -> list[CaseChange | AlertRejectedError | None]:
            outcomes: list[CaseChange | AlertRejectedError | None] = []
            for item in prepared:
                if isinstance(item, AlertRejectedError):
                    outcomes.append(item)
                    continue
                alert, detected_at, values = item
                if alert.state == "open":
                    outcomes.append(self._open(session, alert, values, detected_at))
                else:
                    outcomes.append(self._change(session, alert, values, detected_at))
            return outcomes

        return await self._transactions.run(work)

    def _change(
        self, session: Session, alert: Alert, values: dict[str, Any], detected_at: datetime
    ) -> CaseChange | None:
        conditions = [
            CaseRow.rule_id == alert.rule_id,
            CaseRow.sensor_id == alert.sensor_id,
            CaseRow.started_at == alert.started_at,
        ]
        if alert.state != "flapping":  # a member joins, a sensor recovers: an open case only
            conditions.append(CaseRow.status == "open")
        statement = (
            update(CaseRow)
            .where(*conditions)
            .values(**values)
            .returning(CaseRow)
            # the row may be in this transaction's session already (opened in the same batch)
            .execution_options(populate_existing=True)
        )
        row = session.scalars(statement).one_or_none()
        if row is None:
            return None
        log = CaseLog(session, detected_at, self.escalation)
        if alert.state == "member":
            log.event("updated", row)
        elif alert.state == "cleared":
            log.event("recovered", row)
        else:
            log.event("reopened", row)
            late = lifecycle.detected_late(alert.at, detected_at, self.late_after)
            for action in lifecycle.retrigger_actions(Step(row.step)):
                note = lifecycle.SYSTEM_NOTES[action]
                log.move(row, action, lifecycle.SYSTEM, note, live=not late)
        return log.change(row)

    async def transition(
        self,
        case_id: int,
        *,
        action: Action | None = None,
        to: Step | None = None,
        actor: str,
        note: str = "",
        at: datetime,
    ) -> CaseChange:
        """Move a case by ``action`` (or to the step ``to``); raises ``CaseNotFoundError``, and
        ``TransitionRefusedError`` with the reason when its step does not allow it."""
        _require_aware("at", at)

        def work(session: Session) -> CaseChange:
            row = session.get(CaseRow, case_id)
            if row is None:
                raise CaseNotFoundError(f"case {case_id} not found")
            moving = action
            if moving is None:
                if to is None:
                    raise ValueError("give an action or a step to go to")
                moving = lifecycle.action_to(Step(row.step), to)
            log = CaseLog(session, at, self.escalation)
            log.move(row, moving, actor, note)
            return log.change(row)

        return await self._transactions.run(work)

    async def escalate_due(self, now: datetime, limit: int = 100) -> list[CaseChange]:
        """Escalate up to ``limit`` cases whose acknowledgement deadline passed at ``now``
        (``center.escalation``), most overdue first, in one transaction."""
        _require_aware("now", now)
        overdue = (
            select(CaseRow)
            .where(
                CaseRow.ack_due_at <= now,
                CaseRow.step.in_([step.value for step in AWAITING]),
                CaseRow.escalations < self.escalation.max_escalations,
            )
            .order_by(CaseRow.ack_due_at, CaseRow.id)
            .limit(limit)
        )

        def work(session: Session) -> list[CaseChange]:
            changes = []
            for row in session.scalars(overdue).all():
                log = CaseLog(session, now, self.escalation)
                log.escalate(row)
                changes.append(log.change(row))
            return changes

        return await self._transactions.run(work)

    async def open_incidents(self) -> list[tuple[str, str, datetime, list[str]]]:
        """(rule, first sensor, start, members) of every open case: what a restarted engine
        must know is open."""
        statement = select(
            CaseRow.rule_id, CaseRow.sensor_id, CaseRow.started_at, CaseRow.members
        ).where(CaseRow.status == "open")
        async with self._session() as session:
            rows = (await session.execute(statement)).all()
            return [(r[0], r[1], r[2], list(r[3] or [r[1]])) for r in rows]

    def _open(
        self, session: Session, alert: Alert, values: dict[str, Any], detected_at: datetime
    ) -> CaseChange | None:
        late = lifecycle.detected_late(alert.at, detected_at, self.late_after)
        values["detected_late"] = late
        statement = _OPEN_CASE[self._engine.dialect.name]
        row = session.scalars(statement, values).one_or_none()
        if row is None:
            return None
        log = CaseLog(session, detected_at, self.escalation)
        note = f"rule {alert.rule_id} on {alert.sensor_id}"
        log.discovered(row, note + (" (detected late)" if late else ""))
        for action in lifecycle.opening_actions(alert.severity, late):
            note = lifecycle.SYSTEM_NOTES[action]
            log.move(row, action, lifecycle.SYSTEM, note, live=not late)
        return log.change(row)

    async def list_cases(
        self,
        filters: CaseFilter | None = None,
        *,
        sort: CaseSort = "-detected_at",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[CaseOut], int]:
        """One page of the cases that match ``filters`` in the order ``sort`` (by default the
        one the center learned of last first: ``detected_at``, its clock, not the devices'),
        and how many match in all."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit {limit} must be >= 1 and offset {offset} >= 0")
        filters = filters or CaseFilter()
        for name in ("since", "until", "opened_from", "opened_to"):
            value = getattr(filters, name)
            if value is not None:
                _require_aware(name, value)
        conditions = filters.conditions()
        page = (
            select(CaseRow).where(*conditions).order_by(*order_by(sort)).limit(limit).offset(offset)
        )
        count = select(func.count()).select_from(CaseRow).where(*conditions)
        async with self._session() as session:
            total = (await session.execute(count)).scalar_one()
            rows = (await session.scalars(page)).all()
            return [CaseOut.model_validate(row) for row in rows], total

    async def stats(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> CaseStatsOut:
        """The evaluate step's numbers for the cases detected in ``[since, until)``
        (``center.stats``); ``WindowTooLargeError`` for a window of too many cases."""
        for name, value in (("since", since), ("until", until)):
            if value is not None:
                _require_aware(name, value)
        async with self._session() as session:
            return await StatsQuery(session, since, until).run()

    async def purge_closed(
        self, before: datetime, batch: int = PURGE_BATCH, *, delivered_through: int | None = None
    ) -> int:
        """Delete the cases at ``close`` or ``evaluate`` whose sensor recovered and that have
        not changed since ``before`` (``updated_at``), with their audit trails and events, in
        transactions of ``batch`` cases; how many. A closed case whose sensor still reports
        the condition stays: the rules engine holds its incident open, and a re-trigger must
        find the case to re-open it. ``delivered_through``: the lowest delivery cursor (the
        event id every subscriber confirmed); a case with an event after it stays until every
        subscriber has it."""
        _require_aware("before", before)
        conditions = [
            CaseRow.step.in_([step.value for step in lifecycle.CLOSED_STEPS]),
            CaseRow.status == "cleared",
            CaseRow.updated_at < before,
        ]
        if delivered_through is not None:
            undelivered = select(CaseEventRow.id).where(
                CaseEventRow.case_id == CaseRow.id, CaseEventRow.id > delivered_through
            )
            conditions.append(~undelivered.exists())
        expired = select(CaseRow.id).where(*conditions).order_by(CaseRow.id).limit(batch)

        def work(session: Session) -> int:
            ids = list(session.scalars(expired).all())
            for table in (CaseTransitionRow, CaseEventRow):
                session.execute(delete(table).where(table.case_id.in_(ids)))
            session.execute(delete(CaseRow).where(CaseRow.id.in_(ids)))
            return len(ids)

        purged = 0
        while True:
            count = await self._transactions.run(work)
            purged += count
            if count < batch:
                return purged

    async def ping(self) -> None:
        """Raises ``StoreError`` when the database does not answer."""
        async with self._session() as session:
            await session.execute(select(1))

    async def get_case(self, case_id: int) -> CaseOut | None:
        async with self._session() as session:
            row = await session.get(CaseRow, case_id)
            return None if row is None else CaseOut.model_validate(row)

    async def history(self, case_id: int) -> list[TransitionOut] | None:
        """The case's audit trail, oldest first; ``None`` for an unknown case."""
        statement = (
            select(CaseTransitionRow)
            .where(CaseTransitionRow.case_id == case_id)
            .order_by(CaseTransitionRow.id)
        )
        async with self._session() as session:
            if await session.get(CaseRow, case_id) is None:
                return None
            rows = (await session.scalars(statement)).all()
            return [TransitionOut.model_validate(row) for row in rows]

    async def events_after(self, after: int, limit: int = 500) -> list[CaseEvent]:
        """Up to ``limit`` events with an id above ``after``, in id order."""
        statement = (
            select(CaseEventRow)
            .where(CaseEventRow.id > after)
            .order_by(CaseEventRow.id)
            .limit(limit)
        )
        async with self._session() as session:
            return [event_from_row(row) for row in (await session.scalars(statement)).all()]

    async def newest_event_id(self) -> int:
        """The id of the newest event; 0 when there is none."""
        async with self._session() as session:
            newest = (await session.execute(select(func.max(CaseEventRow.id)))).scalar_one()
            return int(newest or 0)
