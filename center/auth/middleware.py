"""Default deny in front of the whole app: every request but the table's public ones needs a
live credential, and the table's permission (``center.auth.policy``).

An ASGI middleware, not a route dependency, so nothing mounted on the app escapes it (the
OpenAPI and docs pages FastAPI adds, a static mount, a router included later), and so a long
response (the live stream) passes through untouched. Credentials, first found wins:

- ``Authorization: Bearer <token>``: API clients. A malformed Authorization header is a 401.
- the ``citysense_session`` cookie: browsers, ``EventSource`` included.

A response that streams (the live case stream) is checked again while it runs: at its first
chunk after ``stream_recheck_s`` (60 s; the stream sends a keep-alive every 15 s), the credential
is looked up again, and a stream whose token was revoked, whose session ended or whose user was
disabled is ended there. The client's reconnect then gets its 401.

Cross-site requests: the session cookie is ``SameSite=Strict`` and every state-changing route
takes JSON only, which a cross-site form cannot send and a cross-site ``fetch`` cannot send
without a CORS preflight this app never grants. On top of that, a state-changing request that
rides on the cookie (and the sign-in itself) is refused when the browser says it is cross-site
(``Sec-Fetch-Site``) or, from a browser that does not say, when its ``Origin`` is not this host:
that also covers a sibling subdomain, which SameSite counts as the same site.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from center.auth.policy import PUBLIC, SIGNED_IN, Access, AccessPolicy, roles_with
from center.auth.roles import Permission, Principal
from center.errors import StoreError

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "citysense.principal"
"""The ``Principal`` of the request, in its ASGI scope (``center.api.deps.PrincipalDep``)."""
SESSION_COOKIE = "citysense_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_SIGNED_IN = (
    "not signed in: send 'Authorization: Bearer <token>' or sign in (POST /api/v1/session)"
)


class Authenticator(Protocol):
    async def authenticate(
        self, *, token: str | None = None, session: str | None = None
    ) -> Principal | None: ...


def route_path(scope: Scope) -> str:
    """The path the router matches: without the ``root_path`` a proxy may mount the app at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path


def bearer_token(headers: Headers) -> tuple[str | None, bool]:
    """``(token, malformed)`` from the Authorization header."""
    value = headers.get("authorization")
    if value is None:
        return None, False
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None, True
    return token, False


def cross_site(headers: Headers) -> bool:
    """The browser says the request comes from another site (or, without ``Sec-Fetch-Site``,
    from another origin than this host)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    host = headers.get("host", "")
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()


def _needs(access: Permission) -> str:
    roles = ", ".join(role.value for role in roles_with(access))
    return f"this needs the {access.value} permission ({roles})"


class CredentialLapsedError(OSError):
    """Raised into a streaming response whose credential no longer holds (an ``OSError``, as
    a client that went away is to Starlette): it ends the response."""


class AuthMiddleware:
    stream_recheck_s = 60.0
    """How often a streaming response's credential is looked up again."""

    def __init__(self, app: ASGIApp, accounts: Authenticator, policy: AccessPolicy) -> None:
        self.app = app
        self.accounts = accounts
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        method = scope.get("method", "GET")
        access = self.policy.access(method, route_path(scope))
        unsafe = method in UNSAFE_METHODS
        if access == PUBLIC:
            if unsafe and cross_site(connection.headers):
                await self._refuse(scope, receive, send, 403, "cross-site request refused")
                return
            await self.app(scope, receive, send)
            return
        token, malformed = bearer_token(connection.headers)
        if malformed:
            detail = "malformed Authorization header: 'Authorization: Bearer <token>'"
            await self._refuse(scope, receive, send, 401, detail)
            return
        session = None if token is not None else connection.cookies.get(SESSION_COOKIE)
        if token is None and not session:
            await self._refuse(scope, receive, send, 401, NOT_SIGNED_IN)
            return
        try:
            principal = await self.accounts.authenticate(token=token, session=session)
        except StoreError as exc:
            log.error("%s %s: %s", method, scope["path"], exc)
            await self._refuse(scope, receive, send, 503, "case store unavailable")
            return
        if principal is None:
            detail = (
                "the token is not valid (unknown or revoked)"
                if token is not None
                else "the session has ended: sign in again"
            )
            await self._refuse(scope, receive, send, 401, detail)
            return
        if token is None and unsafe and cross_site(connection.headers):
            await self._refuse(scope, receive, send, 403, "cross-site request refused")
            return
        if access != SIGNED_IN and not principal.allows(Permission(access)):
            detail = f"{principal.name} ({principal.role.value}) may not do this: " + _needs(
                Permission(access)
            )
            await self._refuse(scope, receive, send, 403, detail)
            return
        scope[PRINCIPAL_KEY] = principal
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._while_valid(scope, receive, send, access, token, session)

    async def _still_valid(self, access: Access, token: str | None, session: str | None) -> bool:
        try:
            principal = await self.accounts.authenticate(token=token, session=session)
        except StoreError:
            return True  # cannot tell: the next check will
        return principal is not None and (
            access == SIGNED_IN or principal.allows(Permission(access))
        )

    async def _while_valid(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        access: Access,
        token: str | None,
        session: str | None,
    ) -> None:
        """Run the app; end a streaming response at a chunk once its credential lapsed."""
        checked = time.monotonic()
        lapsed = False

        async def checked_send(message: Message) -> None:
            nonlocal checked, lapsed
            if lapsed:
                raise CredentialLapsedError("the credential of this stream lapsed")
            streaming = message["type"] == "http.response.body" and message.get("more_body")
            if streaming and time.monotonic() - checked >= self.stream_recheck_s:
                checked = time.monotonic()
                if not await self._still_valid(access, token, session):
                    lapsed = True
                    log.info("%s: ended a stream whose credential lapsed", scope["path"])
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    raise CredentialLapsedError("the credential of this stream lapsed")
            await send(message)

        try:
            await self.app(scope, receive, checked_send)
        except Exception:
            if not lapsed:
                raise

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        headers = {"WWW-Authenticate": 'Bearer realm="citysense"'} if status == 401 else None
        await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
            scope, receive, send
        )
