"""The case store: alerts in, cases out, over an async SQLAlchemy engine (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from center.classify import classify
from center.db import CaseRow
from center.errors import AlertRejectedError, StoreError
from center.schemas import CaseOut, CaseStatus
from protocol import SensorInfo
from rules.alerts import Alert

ALERT_KEY = ("rule_id", "sensor_id", "started_at")
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise AlertRejectedError(f"{name} {value.isoformat()} has no timezone")


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
    }


class CaseStore:
    """Cases in a SQL database migrated by ``center.migrate``.

    A duplicate alert (same rule, sensor and start) never becomes a second case; database
    failures surface as ``StoreError``.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            raise StoreError(f"case store runs on sqlite or postgresql, not {engine.dialect.name}")
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"case store: {exc}") from exc

    async def record_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> CaseOut | None:
        """Open or clear the alert's case; ``None`` when nothing changed (duplicate, no match)."""
        for name, value in (
            ("detected_at", detected_at),
            ("started_at", alert.started_at),
            ("at", alert.at),
        ):
            _require_aware(name, value)
        if alert.state == "open":
            return await self._open(_case_values(alert, sensor, detected_at))
        if alert.state == "member":
            return await self._change(
                alert, {"members": list(alert.members), "updated_at": detected_at}, only_open=True
            )
        if alert.state == "flapping":
            values = {
                "status": "open",
                "cleared_at": None,
                "flapping": True,
                "flags": list(alert.flags),
                "updated_at": detected_at,
            }
            return await self._change(alert, values, only_open=False)
        return await self._clear(alert, detected_at)

    async def _change(
        self, alert: Alert, values: dict[str, Any], *, only_open: bool
    ) -> CaseOut | None:
        conditions = [
            CaseRow.rule_id == alert.rule_id,
            CaseRow.sensor_id == alert.sensor_id,
            CaseRow.started_at == alert.started_at,
        ]
        if only_open:
            conditions.append(CaseRow.status == "open")
        statement = update(CaseRow).where(*conditions).values(**values).returning(CaseRow)
        async with self._session() as session:
            row = (await session.scalars(statement)).one_or_none()
            return None if row is None else CaseOut.model_validate(row)

    async def open_incidents(self) -> list[tuple[str, str, datetime, list[str]]]:
        """(rule, first sensor, start, members) of every open case: what a restarted engine
        must know is open."""
        statement = select(
            CaseRow.rule_id, CaseRow.sensor_id, CaseRow.started_at, CaseRow.members
        ).where(CaseRow.status == "open")
        async with self._session() as session:
            rows = (await session.execute(statement)).all()
            return [(r[0], r[1], r[2], list(r[3] or [r[1]])) for r in rows]

    async def _open(self, values: dict[str, Any]) -> CaseOut | None:
        insert: postgresql.Insert | sqlite.Insert = (
            postgresql.insert(CaseRow)
            if self._engine.dialect.name == "postgresql"
            else sqlite.insert(CaseRow)
        )
        statement = (
            insert.values(**values)
            .on_conflict_do_nothing(index_elements=list(ALERT_KEY))
            .returning(CaseRow)
        )
        async with self._session() as session:
            row = (await session.scalars(statement)).one_or_none()
            return None if row is None else CaseOut.model_validate(row)

    async def _clear(self, alert: Alert, detected_at: datetime) -> CaseOut | None:
        statement = (
            update(CaseRow)
            .where(
                CaseRow.rule_id == alert.rule_id,
                CaseRow.sensor_id == alert.sensor_id,
                CaseRow.started_at == alert.started_at,
                CaseRow.status == "open",
            )
            .values(status="cleared", cleared_at=alert.at, updated_at=detected_at)
            .returning(CaseRow)
        )
        async with self._session() as session:
            row = (await session.scalars(statement)).one_or_none()
            return None if row is None else CaseOut.model_validate(row)

    async def list_cases(
        self,
        *,
        status: CaseStatus | None = None,
        class_code: str | None = None,
        station_id: str | None = None,
        sensor_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[CaseOut], int]:
        """One page of cases, newest opened first, and how many match in all."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit {limit} must be >= 1 and offset {offset} >= 0")
        if since is not None:
            _require_aware("since", since)
        conditions: list[ColumnElement[bool]] = []
        for column, wanted in (
            (CaseRow.status, status),
            (CaseRow.class_code, class_code),
            (CaseRow.station_id, station_id),
            (CaseRow.sensor_id, sensor_id),
        ):
            if wanted is not None:
                conditions.append(column == wanted)
        if since is not None:
            conditions.append(CaseRow.opened_at >= since)
        page = (
            select(CaseRow)
            .where(*conditions)
            .order_by(CaseRow.opened_at.desc(), CaseRow.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(CaseRow).where(*conditions)
        async with self._session() as session:
            total = (await session.execute(count)).scalar_one()
            rows = (await session.scalars(page)).all()
            return [CaseOut.model_validate(row) for row in rows], total

    async def ping(self) -> None:
        """Raises ``StoreError`` when the database does not answer."""
        async with self._session() as session:
            await session.execute(select(1))

    async def get_case(self, case_id: int) -> CaseOut | None:
        async with self._session() as session:
            row = await session.get(CaseRow, case_id)
            return None if row is None else CaseOut.model_validate(row)
