"""Storage rows (SQLAlchemy 2) and the engine factory. API schemas live in ``schemas.py``."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no offset, so values are normalised to UTC on the way in (naive values are
    refused) and UTC is attached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CaseRow(Base):
    """One case: an incident of one rule, named by its first sensor and start; ``members``
    lists every sensor of a grouped incident (first sensor first).

    ``status`` is the sensor's condition (``open`` / ``cleared``: the sensor recovered), ``step``
    where the people are in the 7-step loop (``center.lifecycle``): a sensor never closes a
    case."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("rule_id", "sensor_id", "started_at", name="uq_cases_alert"),
        Index("ix_cases_opened_at", "opened_at"),
        Index("ix_cases_detected_at", "detected_at"),
        Index("ix_cases_step", "step"),
        Index("ix_cases_status", "status"),
        Index("ix_cases_class_code", "class_code"),
        Index("ix_cases_station_id", "station_id"),
        Index("ix_cases_sensor_id", "sensor_id"),
        Index("ix_cases_ack_due_at", "ack_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    class_code: Mapped[str] = mapped_column(String(4))
    class_name: Mapped[str] = mapped_column(String(64))
    major_name: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64))
    sensor_id: Mapped[str] = mapped_column(String(128))
    sensor_kind: Mapped[str] = mapped_column(String(16))
    component_id: Mapped[str | None] = mapped_column(String(16))
    grid_code: Mapped[str | None] = mapped_column(String(14))
    district_code: Mapped[str | None] = mapped_column(String(6))
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    field: Mapped[str] = mapped_column(String(32))
    trigger_value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    unregistered: Mapped[bool] = mapped_column(Boolean)
    members: Mapped[list[str]] = mapped_column(JSON, default=list)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[str] = mapped_column(String(16), default="discover")
    detected_late: Mapped[bool] = mapped_column(Boolean, default=False)
    ended_before_seen: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=1)
    ack_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """An urgent or critical case must be acknowledged (at register) or taken on (at dispatch)
    by then (``center.escalation``)."""
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When a person first acted on it (``acknowledge`` or a move) since it last (re)opened."""
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    rules_version: Mapped[int | None] = mapped_column(Integer)
    """The version of the rule set that opened it (``GET /api/v1/rules`` has its text)."""


class CaseTransitionRow(Base):
    """The audit trail: one row per step a case took, written with the change itself."""

    __tablename__ = "case_transitions"
    __table_args__ = (Index("ix_case_transitions_case_id", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, ForeignKey("cases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    from_step: Mapped[str | None] = mapped_column(String(16))
    to_step: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(1000))


class CaseEventRow(Base):
    """Every case change, in commit order: ``id`` is the live stream's event id.

    Written in the transaction of the change. Ids only grow (SQLite ``AUTOINCREMENT`` never
    reuses one; PostgreSQL writers take ``EVENT_LOCK`` before writing, so ids commit in order).
    ``data`` is the event as the stream sent it, without its id."""

    __tablename__ = "case_events"
    __table_args__ = (
        Index("ix_case_events_case_id", "case_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, ForeignKey("cases.id"))
    type: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeliveryCursorRow(Base):
    """Where one subscriber (a webhook, the MQTT topic) is in ``case_events``: the id of the
    last event it confirmed. The refusal columns keep the last permanent refusal (a 4xx), for
    the record, until an event after it is delivered. ``owner`` holds the subscriber's delivery
    lease until ``lease_until`` (``center.delivery.relay``: one node delivers to a subscriber,
    another takes over when it stops renewing)."""

    __tablename__ = "delivery_cursors"

    subscriber: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refused_event_id: Mapped[int | None] = mapped_column(Integer)
    refused_reason: Mapped[str | None] = mapped_column(String(500))
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


def sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Every connection to a SQLite case store (a ``connect`` event listener): wait up to 5 s
    for a lock, and WAL (a no-op once the file is in WAL, as migrating leaves it; switching a
    file to WAL needs it to itself, so the busy timeout is set first)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


IDLE_IN_TRANSACTION_S = 5.0
"""PostgreSQL ends a session of ours that sits idle inside a transaction this long. Every
writer holds ``EVENT_LOCK`` (center.transactions) for its transaction: a node frozen or cut
off in the middle of one (SIGSTOP, a paused VM) held it, and every other node's writes (cases,
delivery cursors, the lease a standby takes over) waited until it came back. Our transactions
send their statements back to back (milliseconds); five seconds leaves room for a busy event
loop between them, and a standby still takes a frozen node's lease over within the
fail-over test's bound (``lease_s`` and a third, plus 5 s)."""


def create_engine(
    database_url: str, *, idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S
) -> AsyncEngine:
    """An async engine for the case store. SQLite gets WAL so readers never block the writer,
    and no pre-ping (a local file: the ping was three more round trips to its thread for every
    transaction); PostgreSQL's connections are pinged before use (a server may have closed
    them) and may not stay idle in a transaction longer than ``idle_in_transaction_s``."""
    url = make_url(database_url)
    sqlite = url.get_backend_name() == "sqlite"
    options: dict[str, Any] = {}
    if url.get_driver_name() == "asyncpg":  # the PostgreSQL driver the center runs on
        timeout_ms = str(round(idle_in_transaction_s * 1000))
        options["connect_args"] = {
            "server_settings": {"idle_in_transaction_session_timeout": timeout_ms}
        }
    engine = create_async_engine(database_url, pool_pre_ping=not sqlite, **options)
    if sqlite:
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


_WRITE_LOCKS: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def one_writer(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold this process's write turn on ``engine`` for a write transaction (SQLite only).

    SQLite has one writer at a time. Two of our connections writing at once (a case and a
    delivery cursor) made the second wait in SQLite's busy handler, which sleeps 1, 2, 5, 10,
    15, 20, 25 ms... between tries: a case took 100-500 ms to write under load. Taking turns
    here, the second waits only as long as the first takes. PostgreSQL needs no turn (row
    locks; the case store's own event lock orders the events). Per event loop, since an
    ``asyncio.Lock`` belongs to one."""
    if engine.dialect.name != "sqlite":
        yield
        return
    by_loop = _WRITE_LOCKS.setdefault(engine.sync_engine, weakref.WeakKeyDictionary())
    loop = asyncio.get_running_loop()
    lock = by_loop.get(loop)
    if lock is None:
        lock = by_loop[loop] = asyncio.Lock()
    async with lock:
        yield
