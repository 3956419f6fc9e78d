"""API schemas of sign-in, users and API tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from center.auth.roles import Permission, Role

NAME = r"^[\w.@+-]{1,64}$"


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00]*$")
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    """Who is signed in, and how."""

    name: str
    role: Role
    permissions: list[Permission]
    via: Literal["session", "token"]
    expires_at: AwareDatetime | None = Field(description="When the session ends (a session).")
    token_id: int | None = Field(description="The token's id (a token).")
    token_name: str | None = Field(description="The token's name (a token).")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    role: Role
    password: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="At least 10 characters, not the name nor a well-known default. Leave"
        " out for an account that only holds API tokens.",
    )


class UserOut(BaseModel):
    name: str
    role: Role
    has_password: bool
    created_at: AwareDatetime
    disabled_at: AwareDatetime | None


class UserPage(BaseModel):
    items: list[UserOut]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(pattern=NAME, description="Whose token it is: the actor of its requests.")
    name: str = Field(pattern=NAME, description="What it is for, e.g. ci, prometheus.")
    role: Role = Field(description="The user's role, or one it covers.")


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    role: Role
    created_at: AwareDatetime
    last_used_at: AwareDatetime | None = Field(description="Updated at most once a minute.")
    revoked_at: AwareDatetime | None


class TokenIssued(TokenOut):
    token: str = Field(description="The token itself: shown this once, stored only hashed.")


class TokenPage(BaseModel):
    items: list[TokenOut]
