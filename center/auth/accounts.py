"""The accounts service: who a request comes from, sign-in and sign-out, users and tokens.

Sessions are kept server-side (``user_sessions``), not signed into the cookie: the cookie holds a
random id, the table its SHA-256. Signing out, a new password or disabling a user ends sessions
at once, a copy of the database holds no usable cookie, and there is no signing key to keep
secret, rotate or leave at a default. The price is one indexed read per request, the same as
for an API token.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from center.auth import credentials
from center.auth.credentials import PasswordHashing, check_password_policy
from center.auth.errors import (
    AccountError,
    InsecureSetupError,
    SignInRefusedError,
    TooManySignInsError,
    UnknownAccountError,
)
from center.auth.limiter import SignInLimiter
from center.auth.recent import RecentPrincipals
from center.auth.roles import Principal, Role
from center.auth.store import AccountStore, CredentialOwner, TokenRecord, UserRecord
from center.errors import StoreError

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[\w.@+-]{1,64}")
"""User and token names: letters (any script), digits, ``_ . @ + -``; up to 64 characters."""
RESERVED_NAMES = frozenset({"system"})
"""``system`` is the center's own actor in the audit trail."""
TOUCH_EVERY = timedelta(seconds=60)
"""``last_used_at`` of a token (``last_seen_at`` of a session) is written at most this often."""
DEFAULT_SESSION_TTL = timedelta(hours=12)
LOOKUP_TIMEOUT_S = 3.0
"""A credential lookup that takes longer counts as a database failure."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str, what: str = "user name") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            f"{what} {name!r}: 1 to 64 letters, digits or _ . @ + - (no spaces or slashes)"
        )
    if what == "user name" and name.casefold() in RESERVED_NAMES:
        raise AccountError(f"user name {name!r} is reserved for the center")
    return name


class Accounts:
    def __init__(
        self,
        store: AccountStore,
        *,
        hashing: PasswordHashing | None = None,
        limiter: SignInLimiter | None = None,
        session_ttl: timedelta = DEFAULT_SESSION_TTL,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.hashing = hashing or PasswordHashing()
        self.limiter = limiter or SignInLimiter()
        self.session_ttl = session_ttl
        self.clock = clock
        self.recent = RecentPrincipals(clock)

    # -- who is asking -------------------------------------------------------------------------

    async def authenticate(
        self, *, token: str | None = None, session: str | None = None
    ) -> Principal | None:
        """The principal of a bearer token, else of a session id; ``None`` when neither is
        live (unknown, revoked, expired, or its user disabled).

        Raises ``StoreError`` when the database fails or takes over ``LOOKUP_TIMEOUT_S``,
        unless the credential passed lately (``center.auth.recent``)."""
        if token is None and session is None:
            return None
        secret = token if token is not None else str(session)
        key = ("t:" if token is not None else "s:") + credentials.digest(secret)
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                principal = await self._look_up(token, session)
        except (StoreError, TimeoutError) as exc:
            recalled = self.recent.recall(key)
            if recalled is None:
                raise StoreError(f"cannot check the credential: {exc or 'timed out'}") from exc
            log.warning("database unavailable: %s passes on a recent check", recalled.name)
            return recalled
        if principal is None:
            self.recent.forget(key)
        else:
            self.recent.remember(key, principal)
        return principal

    async def _look_up(self, token: str | None, session: str | None) -> Principal | None:
        now = self.clock()
        if token is not None:
            owner = await self.store.token_owner(credentials.digest(token))
            if owner is None or not self._usable(owner):
                return None
            if owner.token_id is not None and self._stale(owner.last_used_at, now):
                await self.store.touch_token(owner.token_id, now)
            return Principal(owner.user.name, owner.role, "token", owner.token_id, owner.token_name)
        if session is not None:
            digest = credentials.digest(session)
            owner = await self.store.session_owner(digest, now)
            if owner is None or owner.user.disabled_at is not None:
                return None
            if self._stale(owner.last_used_at, now):
                await self.store.touch_session(digest, now)
            return Principal(owner.user.name, owner.role, "session", expires_at=owner.expires_at)
        return None

    @staticmethod
    def _usable(owner: CredentialOwner) -> bool:
        # a token never holds more than its user: a role changed since it was issued caps it
        return owner.user.disabled_at is None and owner.user.role.covers(owner.role)

    @staticmethod
    def _stale(last: datetime | None, now: datetime) -> bool:
        return last is None or now - last >= TOUCH_EVERY

    # -- browser sessions ----------------------------------------------------------------------

    async def sign_in(self, name: str, password: str, address: str) -> tuple[str, Principal]:
        """A new session id (for the cookie, never stored) and who it is for.

        Raises ``TooManySignInsError`` (the password is not even checked) or
        ``SignInRefusedError``: one answer for an unknown user, a wrong password, a user without
        a password and a disabled one, each taking as long as an argon2 check."""
        wait = self.limiter.retry_after(name, address)
        if wait is not None:
            log.warning("sign-in as %r from %s refused: rate limited", name, address)
            raise TooManySignInsError(wait)
        user = await self.store.user(name)
        stored = None if user is None else user.password_hash
        if not await self.hashing.verify(stored, password) or user is None or user.disabled_at:
            self.limiter.failed(name, address)
            log.warning("failed sign-in as %r from %s", name, address)
            raise SignInRefusedError("wrong user name or password")
        self.limiter.succeeded(name)
        if stored is not None and self.hashing.needs_rehash(stored):
            await self.store.set_password(user.name, await self.hashing.hash(password))
        session = credentials.new_session_id()
        now = self.clock()
        expires = now + self.session_ttl
        await self.store.add_session(credentials.digest(session), user.id, now, expires)
        log.info("%s signed in from %s", user.name, address)
        return session, Principal(user.name, user.role, "session", expires_at=expires)

    async def sign_out(self, session: str) -> None:
        digest = credentials.digest(session)
        self.recent.forget("s:" + digest)
        await self.store.end_session(digest)

    # -- users and tokens ----------------------------------------------------------------------

    async def add_user(self, name: str, role: Role, password: str | None) -> UserRecord:
        """A new user; ``password`` ``None``: one that only holds API tokens."""
        check_name(name)
        hashed = None
        if password is not None:
            check_password_policy(name, password)
            hashed = await self.hashing.hash(password)
        return await self.store.add_user(name, role, hashed, self.clock())

    async def set_password(self, name: str, password: str) -> None:
        check_password_policy(name, password)
        self.recent.forget_where(lambda p: p.name == name and p.via == "session")
        await self.store.set_password(name, await self.hashing.hash(password))

    async def disable(self, name: str) -> None:
        self.recent.forget_where(lambda p: p.name == name)
        await self.store.disable(name, self.clock())

    async def users(self) -> list[UserRecord]:
        return await self.store.users()

    async def issue_token(self, user: str, name: str, role: Role) -> tuple[str, TokenRecord]:
        """A new token (shown once: only its digest is kept) of ``user``, with ``role``: the
        user's own or one it covers."""
        check_name(name, "token name")
        owner = await self.store.user(user)
        if owner is None:
            raise UnknownAccountError(f"no user {user}")
        if owner.disabled_at is not None:
            raise AccountError(f"user {user} is disabled")
        if not owner.role.covers(role):
            raise AccountError(f"user {user} is {owner.role}: a {role} token would hold more")
        token = credentials.new_token()
        record = await self.store.add_token(
            user, name, role, credentials.digest(token), self.clock()
        )
        return token, record

    async def tokens(self, user: str | None = None) -> list[TokenRecord]:
        return await self.store.tokens(user)

    async def revoke_token(self, token_id: int) -> TokenRecord:
        self.recent.forget_where(lambda p: p.via == "token" and p.credential_id == token_id)
        return await self.store.revoke_token(token_id, self.clock())

    # -- production ----------------------------------------------------------------------------

    async def check_production(self) -> None:
        """Refuse a store no one can administer, or whose admins keep a well-known password."""
        admins = [
            user
            for user in await self.store.users()
            if user.role is Role.ADMIN and user.disabled_at is None
        ]
        if not admins:
            raise InsecureSetupError(
                "no admin account in the case database: create one with "
                "'citysense users add NAME --role admin'"
            )
        weak = []
        for admin in admins:
            if admin.password_hash is None:
                continue
            tries = [admin.name, *credentials.DEFAULT_PASSWORDS]
            checks = [self.hashing.verify(admin.password_hash, guess) for guess in tries]
            if any(await asyncio.gather(*checks)):
                weak.append(admin.name)
        if weak:
            raise InsecureSetupError(
                f"admin {', '.join(weak)} has a default password: set a new one with "
                "'citysense users passwd NAME'"
            )
