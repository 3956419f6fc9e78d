"""``/api/v1/users`` and ``/api/v1/tokens``: accounts and API tokens (the admin role).

The same as ``citysense users``, which works on the database directly (the first admin has to
come from somewhere).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from center.api.deps import AccountsDep
from center.api.responses import Problem, ValidationProblem
from center.auth import (
    AccountError,
    AccountExistsError,
    TokenRecord,
    UnknownAccountError,
    UserRecord,
    WeakPasswordError,
)
from center.schemas_auth import (
    NAME,
    TokenIn,
    TokenIssued,
    TokenOut,
    TokenPage,
    UserIn,
    UserOut,
    UserPage,
)
from center.schemas_query import MAX_ID

REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": Problem | ValidationProblem,
        "description": "Refused: why (`detail`), or a body that does not match (a list).",
    }
}
router = APIRouter(prefix="/api/v1", tags=["accounts"])


def user_out(user: UserRecord) -> UserOut:
    return UserOut(
        name=user.name,
        role=user.role,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
    )


def token_out(token: TokenRecord) -> TokenOut:
    return TokenOut(
        id=token.id,
        user=token.user,
        name=token.name,
        role=token.role,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.get("/users", response_model=UserPage)
async def list_users(accounts: AccountsDep) -> UserPage:
    """Every user, by name."""
    return UserPage(items=[user_out(user) for user in await accounts.users()])


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "A user of that name exists."}, **REFUSED},
)
async def add_user(body: UserIn, accounts: AccountsDep) -> UserOut:
    """A new user; without a password, one that only holds API tokens."""
    try:
        return user_out(await accounts.add_user(body.name, body.role, body.password))
    except AccountExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except (AccountError, WeakPasswordError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None


@router.get("/tokens", response_model=TokenPage)
async def list_tokens(
    accounts: AccountsDep,
    user: Annotated[str | None, Query(pattern=NAME, description="Of this user.")] = None,
) -> TokenPage:
    """API tokens (never the tokens themselves), revoked ones too."""
    return TokenPage(items=[token_out(token) for token in await accounts.tokens(user)])


NO_USER: dict[int | str, dict[str, Any]] = {404: {"description": "No such user."}, **REFUSED}


@router.post(
    "/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED, responses=NO_USER
)
async def issue_token(body: TokenIn, accounts: AccountsDep) -> TokenIssued:
    """A new API token, shown in this answer only."""
    try:
        token, record = await accounts.issue_token(body.user, body.name, body.role)
    except UnknownAccountError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except AccountError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    return TokenIssued(token=token, **token_out(record).model_dump())


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenOut,
    responses={404: {"description": "No such token."}},
)
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=MAX_ID)], accounts: AccountsDep
) -> TokenOut:
    """Revoke a token: it stops working at once. Revoking it again changes nothing."""
    try:
        return token_out(await accounts.revoke_token(token_id))
    except UnknownAccountError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
