"""Users, API tokens and sessions in the case database (tables of migration 0004)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from center.auth.errors import AccountExistsError, UnknownAccountError
from center.auth.roles import Role
from center.auth.rows import ApiTokenRow, SessionRow, UserRow
from center.db import one_writer
from center.errors import StoreError


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    role: Role
    password_hash: str | None
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    user: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CredentialOwner:
    """What a token or session digest leads to: its user and the credential's facts."""

    user: UserRecord
    role: Role
    token_id: int | None
    token_name: str | None
    last_used_at: datetime | None
    expires_at: datetime | None


def _user(row: UserRow) -> UserRecord:
    return UserRecord(
        row.id, row.name, Role(row.role), row.password_hash, row.created_at, row.disabled_at
    )


def _token(row: ApiTokenRow, user: str) -> TokenRecord:
    return TokenRecord(
        row.id, user, row.name, Role(row.role), row.created_at, row.last_used_at, row.revoked_at
    )


class AccountStore:
    """SQL for users, tokens and sessions; a database failure is a ``StoreError``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def _tx(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction; ``write``: in this process's write turn (``center.db.one_writer``)."""
        try:
            async with (
                one_writer(self._engine) if write else nullcontext(),
                self._sessions() as session,
                session.begin(),
            ):
                yield session
        except IntegrityError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"account store: {exc}") from exc

    async def add_user(
        self, name: str, role: Role, password_hash: str | None, at: datetime
    ) -> UserRecord:
        row = UserRow(name=name, role=role.value, password_hash=password_hash, created_at=at)
        try:
            async with self._tx(write=True) as session:
                session.add(row)
        except IntegrityError:
            raise AccountExistsError(f"user {name} exists") from None
        return _user(row)

    async def user(self, name: str) -> UserRecord | None:
        async with self._tx() as session:
            row = (await session.scalars(select(UserRow).where(UserRow.name == name))).first()
            return None if row is None else _user(row)

    async def users(self) -> list[UserRecord]:
        async with self._tx() as session:
            rows = (await session.scalars(select(UserRow).order_by(UserRow.name))).all()
            return [_user(row) for row in rows]

    async def _user_id(self, session: AsyncSession, name: str) -> int:
        found = (await session.scalars(select(UserRow.id).where(UserRow.name == name))).first()
        if found is None:
            raise UnknownAccountError(f"no user {name}")
        return found

    async def set_password(self, name: str, password_hash: str | None) -> None:
        """A new password; the user's sessions end."""
        async with self._tx(write=True) as session:
            user_id = await self._user_id(session, name)
            await session.execute(
                update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash)
            )
            await session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))

    async def disable(self, name: str, at: datetime) -> None:
        """No more sign-in, and the user's sessions and tokens stop working."""
        async with self._tx(write=True) as session:
            user_id = await self._user_id(session, name)
            await session.execute(
                update(UserRow)
                .where(UserRow.id == user_id, UserRow.disabled_at.is_(None))
                .values(disabled_at=at)
            )
            await session.execute(delete(SessionRow).where(SessionRow.user_id == user_id))

    async def add_token(
        self, user: str, name: str, role: Role, digest: str, at: datetime
    ) -> TokenRecord:
        async with self._tx(write=True) as session:
            user_id = await self._user_id(session, user)
            row = ApiTokenRow(
                user_id=user_id, name=name, role=role.value, digest=digest, created_at=at
            )
            session.add(row)
        return _token(row, user)

    async def tokens(self, user: str | None = None) -> list[TokenRecord]:
        statement = select(ApiTokenRow, UserRow.name).join(UserRow).order_by(ApiTokenRow.id)
        if user is not None:
            statement = statement.where(UserRow.name == user)
        async with self._tx() as session:
            return [_token(row, name) for row, name in (await session.execute(statement)).all()]

    async def revoke_token(self, token_id: int, at: datetime) -> TokenRecord:
        async with self._tx(write=True) as session:
            found = (
                await session.execute(
                    select(ApiTokenRow, UserRow.name)
                    .join(UserRow)
                    .where(ApiTokenRow.id == token_id)
                )
            ).first()
            if found is None:
                raise UnknownAccountError(f"no token {token_id}")
            row, user = found
            if row.revoked_at is None:
                row.revoked_at = at
            return _token(row, user)

    async def token_owner(self, digest: str) -> CredentialOwner | None:
        """The live token with this digest and its user (revoked tokens lead nowhere)."""
        statement = (
            select(ApiTokenRow, UserRow)
            .join(UserRow)
            .where(ApiTokenRow.digest == digest, ApiTokenRow.revoked_at.is_(None))
        )
        async with self._tx() as session:
            found = (await session.execute(statement)).first()
        if found is None:
            return None
        token, user = found
        return CredentialOwner(
            _user(user), Role(token.role), token.id, token.name, token.last_used_at, None
        )

    async def touch_token(self, token_id: int, at: datetime) -> None:
        async with self._tx(write=True) as session:
            await session.execute(
                update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=at)
            )

    async def add_session(self, digest: str, user_id: int, at: datetime, expires: datetime) -> None:
        async with self._tx(write=True) as session:
            await session.execute(delete(SessionRow).where(SessionRow.expires_at <= at))
            session.add(
                SessionRow(
                    digest=digest,
                    user_id=user_id,
                    created_at=at,
                    expires_at=expires,
                    last_seen_at=at,
                )
            )

    async def session_owner(self, digest: str, now: datetime) -> CredentialOwner | None:
        statement = (
            select(SessionRow, UserRow)
            .join(UserRow)
            .where(SessionRow.digest == digest, SessionRow.expires_at > now)
        )
        async with self._tx() as session:
            found = (await session.execute(statement)).first()
        if found is None:
            return None
        row, user = found
        return CredentialOwner(
            _user(user), Role(user.role), None, None, row.last_seen_at, row.expires_at
        )

    async def touch_session(self, digest: str, at: datetime) -> None:
        async with self._tx(write=True) as session:
            await session.execute(
                update(SessionRow).where(SessionRow.digest == digest).values(last_seen_at=at)
            )

    async def end_session(self, digest: str) -> None:
        async with self._tx(write=True) as session:
            await session.execute(delete(SessionRow).where(SessionRow.digest == digest))
