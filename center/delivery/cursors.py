"""Delivery cursors in the case store: per subscriber, the id of the last case event it
confirmed (``delivery_cursors``), its last permanent refusal, and its delivery lease: which
node delivers to it, until when (``center.delivery.relay`` says how the lease is used)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from center.db import CaseEventRow, DeliveryCursorRow
from center.delivery.settings import StartAt
from center.errors import StoreError
from center.transactions import Transactions

REASON_CHARS = 500


class LeaseLostError(Exception):
    """Another node holds the subscriber's delivery lease now (this one's ran out)."""


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
    """Cursors over the case store's engine; database failures are ``StoreError``. Writes run
    like the case store's (``center.transactions``: a thread of their own on a SQLite file),
    so a cursor holds the write turn for one call, not for a dozen turns of the event loop
    while a case waits behind it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._transactions = Transactions(engine)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """A read transaction."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"case store: {exc}") from exc

    def close(self) -> None:
        """Refuse new writes; the writer thread (SQLite file) ends after its transaction."""
        self._transactions.close()

    async def open(self, subscriber: str, start: StartAt, now: datetime) -> Cursor:
        """The subscriber's cursor; created the first time at ``start`` (before the first
        event, or after the newest)."""
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert

        def work(session: Session) -> Cursor:
            row = session.get(DeliveryCursorRow, subscriber)
            if row is None:
                first = 0
                if start == "now":
                    newest = session.execute(select(func.max(CaseEventRow.id)))
                    first = int(newest.scalar_one() or 0)
                session.execute(
                    insert(DeliveryCursorRow)
                    .values(subscriber=subscriber, last_event_id=first, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["subscriber"])
                )
                row = session.get(DeliveryCursorRow, subscriber, populate_existing=True)
            if row is None:
                raise StoreError(f"delivery cursor {subscriber!r} not written")
            refusal = None
            if row.refused_event_id is not None and row.refused_at is not None:
                refusal = Refusal(row.refused_event_id, row.refused_reason or "", row.refused_at)
            return Cursor(row.last_event_id, refusal)

        return await self._transactions.run(work)

    async def advance(
        self,
        subscriber: str,
        event_id: int,
        now: datetime,
        *,
        owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> None:
        """The subscriber confirmed every event up to ``event_id``; a cursor never goes back.
        A refusal it has now got past is cleared. With ``owner``: only while ``owner`` holds
        the subscriber's lease, which is renewed to ``lease_until`` in the same transaction;
        raises ``LeaseLostError`` (the cursor stays) when another node holds it."""
        row = DeliveryCursorRow

        def work(session: Session) -> None:
            if owner is not None:
                self._renew(session, subscriber, owner, lease_until or now)
            session.execute(
                update(row)
                .where(row.subscriber == subscriber, row.last_event_id < event_id)
                .values(last_event_id=event_id, updated_at=now)
            )
            session.execute(
                update(row)
                .where(row.subscriber == subscriber, row.refused_event_id <= event_id)
                .values(refused_event_id=None, refused_reason=None, refused_at=None)
            )

        await self._transactions.run(work)

    @staticmethod
    def _renew(session: Session, subscriber: str, owner: str, until: datetime) -> None:
        row = DeliveryCursorRow
        renewed = session.execute(
            update(row)
            .where(row.subscriber == subscriber, row.owner == owner)
            .values(lease_until=until)
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLostError(f"{subscriber}: the delivery lease is no longer {owner}'s")

    async def claim(
        self,
        subscriber: str,
        owner: str,
        now: datetime,
        lease: timedelta,
        *,
        replacing: str | None = None,
    ) -> str | None:
        """Take or renew the subscriber's delivery lease for ``owner`` until ``now + lease``:
        when nobody holds it, ``owner`` does already, the holder's ran out by ``now``, or the
        holder is ``replacing`` (known to be gone). Returns ``None`` when ``owner`` holds it
        now, else who does (the cursor must exist: ``open`` first)."""
        row = DeliveryCursorRow
        free = [row.owner.is_(None), row.owner == owner, row.lease_until < now]
        if replacing is not None:
            free.append(row.owner == replacing)

        def work(session: Session) -> str | None:
            taken = session.execute(
                update(row)
                .where(row.subscriber == subscriber, or_(*free))
                .values(owner=owner, lease_until=now + lease)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return None
            holder = session.execute(select(row.owner).where(row.subscriber == subscriber))
            found = holder.one_or_none()
            if found is None:
                raise StoreError(f"delivery cursor {subscriber!r} not found: open it first")
            return found[0] or "nobody"

        return await self._transactions.run(work)

    async def release(self, subscriber: str, owner: str) -> None:
        """Give up ``owner``'s lease (if it still holds it): another node may take over now."""
        row = DeliveryCursorRow

        def work(session: Session) -> None:
            session.execute(
                update(row)
                .where(row.subscriber == subscriber, row.owner == owner)
                .values(owner=None, lease_until=None)
            )

        await self._transactions.run(work)

    async def refuse(self, subscriber: str, refusal: Refusal) -> None:
        """Record a permanent refusal (the cursor stays before the refused event)."""
        row = DeliveryCursorRow

        def work(session: Session) -> None:
            session.execute(
                update(row)
                .where(row.subscriber == subscriber)
                .values(
                    refused_event_id=refusal.event_id,
                    refused_reason=refusal.reason[:REASON_CHARS],
                    refused_at=refusal.at,
                    updated_at=refusal.at,
                )
            )

        await self._transactions.run(work)

    async def count_after(self, event_id: int) -> int:
        """How many events there are after ``event_id``: a subscriber's lag."""
        count = select(func.count()).select_from(CaseEventRow).where(CaseEventRow.id > event_id)
        async with self._session() as session:
            return int((await session.execute(count)).scalar_one())


def utc_now() -> datetime:
    return datetime.now(UTC)
