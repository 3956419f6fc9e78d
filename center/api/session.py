"""``/api/v1/session``: browser sign-in (a session cookie), who is signed in, sign-out.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it) and ``Secure`` over HTTPS, always in production (``CITYSENSE_CENTER_ENV``); it holds
a random id whose SHA-256 is the session's row (``center.auth.accounts``). Why no CSRF token is
needed: ``center.auth.middleware``.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from center.api.deps import AccountsDep, PrincipalDep
from center.auth import (
    SESSION_COOKIE,
    Principal,
    SignInRefusedError,
    TooManySignInsError,
)
from center.schemas_auth import SessionOut, SignIn

router = APIRouter(prefix="/api/v1/session", tags=["session"])

SIGN_IN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong user name or password (one answer for every reason)."},
    429: {"description": "Too many failed sign-ins for the name or from the address."},
}


def session_out(principal: Principal) -> SessionOut:
    return SessionOut(
        name=principal.name,
        role=principal.role,
        permissions=sorted(principal.role.permissions),
        via=principal.via,
        expires_at=principal.expires_at,
        token_id=principal.credential_id,
        token_name=principal.credential_name,
    )


def _secure(request: Request) -> bool:
    return bool(request.app.state.secure_cookies) or request.url.scheme == "https"


@router.post("", response_model=SessionOut, responses=SIGN_IN_RESPONSES)
async def sign_in(
    body: SignIn, request: Request, response: Response, accounts: AccountsDep
) -> SessionOut | JSONResponse:
    """Check the user name and password; answers who is signed in and sets the session
    cookie."""
    address = request.client.host if request.client is not None else "unknown"
    try:
        session, principal = await accounts.sign_in(body.username, body.password, address)
    except TooManySignInsError as exc:
        wait = str(math.ceil(exc.retry_after_s))
        return JSONResponse(
            {"detail": f"too many failed sign-ins: try again in {wait} s"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": wait},
        )
    except SignInRefusedError:
        return JSONResponse(
            {"detail": "wrong user name or password"}, status_code=status.HTTP_401_UNAUTHORIZED
        )
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=int(accounts.session_ttl.total_seconds()),
        path="/",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return session_out(principal)


@router.get("", response_model=SessionOut)
async def who_am_i(principal: PrincipalDep) -> SessionOut:
    """Who is signed in (by the session cookie or a bearer token), with which role."""
    return session_out(principal)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def sign_out(request: Request, accounts: AccountsDep, principal: PrincipalDep) -> Response:
    """End the session of the cookie and clear the cookie (a bearer token stays valid: revoke
    it to end it)."""
    session = request.cookies.get(SESSION_COOKIE)
    if principal.via == "session" and session:
        await accounts.sign_out(session)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=_secure(request), httponly=True, samesite="strict"
    )
    return response
