"""Who may do what: four roles, each an explicit set of permissions (not a ladder).

=========  ======================================================================
role       permissions
=========  ======================================================================
viewer     ``read``: cases, their history and stream, stations, sensors, rejects,
           stats, metrics, the API document, the dashboard's data
operator   ``read`` + ``transition``: move cases through the 7 steps
engineer   ``read`` + ``rules``: the rule set, its versions, overrides, shadow runs
admin      every permission, and ``admin``: users and API tokens
=========  ======================================================================

Operator and engineer are siblings: an operator may not change rules, an engineer may not move
cases. A role *covers* another when it holds every permission of it (admin covers all, viewer
none but itself): a token may be issued with its user's role or a role it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal


class Permission(StrEnum):
    READ = "read"
    TRANSITION = "transition"
    RULES = "rules"
    ADMIN = "admin"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]

    def allows(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self]

    def covers(self, other: Role) -> bool:
        """Every permission of ``other`` is one of this role's."""
        return ROLE_PERMISSIONS[other] <= ROLE_PERMISSIONS[self]


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.TRANSITION}),
    Role.ENGINEER: frozenset({Permission.READ, Permission.RULES}),
    Role.ADMIN: frozenset(Permission),
}

Via = Literal["session", "token"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a user, signed in by a browser session or by an API token.

    ``role`` is the credential's: a token's own role (its user's or one the user's covers), a
    session's the user's. ``credential_id`` is the token's id (``None`` for a session)."""

    name: str
    role: Role
    via: Via
    credential_id: int | None = None
    credential_name: str | None = None
    expires_at: datetime | None = None

    def allows(self, permission: Permission) -> bool:
        return self.role.allows(permission)
