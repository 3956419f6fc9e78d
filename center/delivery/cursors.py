"""Delivery cursors in the case store: per subscriber, the id of the last case event it
confirmed (``delivery_cursors``), and its last permanent refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from center.db import CaseEventRow, DeliveryCursorRow, one_writer
from center.delivery.settings import StartAt
from center.errors import StoreError

REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class Refusal:
    """A receiver's permanent refusal of one event."""

    event_id: int
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Cursor:
    last_event_id: int
    refusal: Refusal | None


class CursorStore:
    """Cursors over the case store's engine; database failures are ``StoreError``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction; ``write``: in this process's write turn (``center.db.one_writer``)."""
        try:
            async with (
                one_writer(self._engine) if write else nullcontext(),
                self._sessions() as session,
                session.begin(),
            ):
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"case store: {exc}") from exc

    async def open(self, subscriber: str, start: StartAt, now: datetime) -> Cursor:
        """The subscriber's cursor; created the first time at ``start`` (before the first
        event, or after the newest)."""
        async with self._session(write=True) as session:
            row = await session.get(DeliveryCursorRow, subscriber)
            if row is None:
                first = 0
                if start == "now":
                    newest = await session.execute(select(func.max(CaseEventRow.id)))
                    first = int(newest.scalar_one() or 0)
                insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
                await session.execute(
                    insert(DeliveryCursorRow)
                    .values(subscriber=subscriber, last_event_id=first, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["subscriber"])
                )
                row = await session.get(DeliveryCursorRow, subscriber, populate_existing=True)
            if row is None:
                raise StoreError(f"delivery cursor {subscriber!r} not written")
            refusal = None
            if row.refused_event_id is not None and row.refused_at is not None:
                refusal = Refusal(row.refused_event_id, row.refused_reason or "", row.refused_at)
            return Cursor(row.last_event_id, refusal)

    async def advance(self, subscriber: str, event_id: int, now: datetime) -> None:
        """The subscriber confirmed every event up to ``event_id``; a cursor never goes back.
        A refusal it has now got past is cleared."""
        row = DeliveryCursorRow
        async with self._session(write=True) as session:
            await session.execute(
                update(row)
                .where(row.subscriber == subscriber, row.last_event_id < event_id)
                .values(last_event_id=event_id, updated_at=now)
            )
            await session.execute(
                update(row)
                .where(row.subscriber == subscriber, row.refused_event_id <= event_id)
                .values(refused_event_id=None, refused_reason=None, refused_at=None)
            )

    async def refuse(self, subscriber: str, refusal: Refusal) -> None:
        """Record a permanent refusal (the cursor stays before the refused event)."""
        row = DeliveryCursorRow
        async with self._session(write=True) as session:
            await session.execute(
                update(row)
                .where(row.subscriber == subscriber)
                .values(
                    refused_event_id=refusal.event_id,
                    refused_reason=refusal.reason[:REASON_CHARS],
                    refused_at=refusal.at,
                    updated_at=refusal.at,
                )
            )

    async def count_after(self, event_id: int) -> int:
        """How many events there are after ``event_id``: a subscriber's lag."""
        count = select(func.count()).select_from(CaseEventRow).where(CaseEventRow.id > event_id)
        async with self._session() as session:
            return int((await session.execute(count)).scalar_one())


def utc_now() -> datetime:
    return datetime.now(UTC)
