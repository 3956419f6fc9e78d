"""Secrets: API tokens and session ids (random, stored as SHA-256), passwords (argon2id).

A token or session id is 32 random bytes: guessing one is hopeless, so a fast hash is enough to
keep a copy of the database from being a list of working credentials, and lookups by hash stay
an index seek. Passwords are chosen by people: they get argon2id (argon2-cffi's defaults, RFC
9106's low-memory profile), verified off the event loop and a few at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TOKEN_PREFIX = "cst_"
"""API tokens start with it, so a secret scanner (and a person) can tell one."""
SECRET_BYTES = 32
MIN_PASSWORD_LENGTH = 10
COMMON_PASSWORDS = frozenset(
    {
        "admin",
        "administrator",
        "changeme",
        "citysense",
        "operator",
        "password",
        "password1",
        "qwerty",
        "root",
        "secret",
        "welcome",
        "123456",
        "12345678",
        "1234567890",
        "admin123",
        "admin12345",
        "password123",
        "citysense1",
        "citysense123",
    }
)
"""Refused as passwords (besides the user's own name)."""
DEFAULT_PASSWORDS = ("admin", "password", "changeme", "citysense")
"""What ``CITYSENSE_CENTER_ENV=production`` checks every admin's password against (with the
admin's name) before the node starts: a handful, as each check costs an argon2 verification."""


class WeakPasswordError(ValueError):
    """A password the policy refuses, with the reason."""


def new_token() -> str:
    """A new API token: shown once, stored as its digest."""
    return TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_session_id() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    """The stored form of a token or session id: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_password_policy(name: str, password: str) -> None:
    """Refuse a password that is short, the user's name, or a well-known default."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    lowered = password.lower()
    if lowered == name.lower() or lowered in COMMON_PASSWORDS:
        raise WeakPasswordError("that password is the user's name or a well-known default")
    if len(set(password)) < 4:
        raise WeakPasswordError("a password needs at least 4 different characters")


class PasswordHashing:
    """argon2id hashing and verification in worker threads, at most ``parallel`` at once (each
    takes tens of milliseconds and 64 MiB: a burst of sign-ins must not exhaust the node)."""

    def __init__(self, hasher: PasswordHasher | None = None, parallel: int = 2) -> None:
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(parallel)

    @cached_property
    def _decoy(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    def hash_now(self, password: str) -> str:
        """Blocking: for the CLI and for threads."""
        return self.hasher.hash(password)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    def verify_now(self, stored: str | None, password: str) -> bool:
        """Blocking. ``stored`` ``None`` (unknown user, or one without a password) is verified
        against a decoy hash, so it takes as long as a wrong password and answers no."""
        try:
            return self.hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self.verify_now, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
