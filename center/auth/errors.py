"""Errors of accounts and sign-in."""

from __future__ import annotations

from center.errors import CenterError


class AccountError(CenterError, ValueError):
    """A change to users or tokens that cannot be made, with the reason."""


class AccountExistsError(AccountError):
    """A user of that name exists."""


class UnknownAccountError(AccountError, LookupError):
    """No such user, or no such token."""


class SignInRefusedError(CenterError):
    """Wrong user name or password (the same answer for both, and for a disabled user)."""


class TooManySignInsError(CenterError):
    """Too many failed sign-ins for the name or from the address; try again after
    ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class InsecureSetupError(CenterError):
    """``CITYSENSE_CENTER_ENV=production`` and the setup is not fit for it: why."""
