"""Sign-in and roles: users, API tokens and browser sessions in the case database, the access
table every route is checked against, and the middleware that enforces it (default deny).

Built by the composition root::

    accounts = Accounts(AccountStore(engine), session_ttl=settings.session_ttl)
    app = create_app(service, auth=accounts, secure_cookies=settings.production, ...)

Design and the roles table: docs/access.md.
"""

from center.auth.accounts import Accounts, check_name
from center.auth.credentials import PasswordHashing, WeakPasswordError
from center.auth.errors import (
    AccountError,
    AccountExistsError,
    InsecureSetupError,
    SignInRefusedError,
    TooManySignInsError,
    UnknownAccountError,
)
from center.auth.limiter import SignInLimiter
from center.auth.middleware import PRINCIPAL_KEY, SESSION_COOKIE, AuthMiddleware
from center.auth.policy import AccessPolicy
from center.auth.roles import Permission, Principal, Role
from center.auth.store import AccountStore, TokenRecord, UserRecord

__all__ = [
    "PRINCIPAL_KEY",
    "SESSION_COOKIE",
    "AccessPolicy",
    "AccountError",
    "AccountExistsError",
    "AccountStore",
    "Accounts",
    "AuthMiddleware",
    "InsecureSetupError",
    "PasswordHashing",
    "Permission",
    "Principal",
    "Role",
    "SignInLimiter",
    "SignInRefusedError",
    "TokenRecord",
    "TooManySignInsError",
    "UnknownAccountError",
    "UserRecord",
    "WeakPasswordError",
    "check_name",
]
