"""Which permission each route needs: one table for the whole HTTP surface, default deny.

A request is matched against the table by method and path (``HEAD`` as ``GET``), in order: the
first entry whose template matches decides. ``public`` needs nothing, ``signed-in`` any valid
credential, a ``Permission`` a role that holds it (``center.auth.roles``). Anything the table
does not name, a route added later included, needs ``admin``: it is never open by mistake,
and ``tests/center/test_auth_routes.py`` fails until it is given its entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from center.auth.roles import Permission, Role

Access = Permission | Literal["public", "signed-in"]
PUBLIC: Access = "public"
SIGNED_IN: Access = "signed-in"
DEFAULT: Access = Permission.ADMIN
"""What a route not in the table needs."""

READ = Permission.READ
TRANSITION = Permission.TRANSITION
RULES = Permission.RULES
ADMIN = Permission.ADMIN
_RULES = "/api/v1/rules"

ROUTES: tuple[tuple[str, str, Access], ...] = (
    ("GET", "/healthz", PUBLIC),  # load balancers and systemd probe it: status and checks' ok only
    ("GET", "/api/v1/health", READ),  # the same with the node's counters and the checks' detail
    ("GET", "/", PUBLIC),  # the dashboard's page: a sign-in form until there is a session
    ("GET", "/static/{module}.js", PUBLIC),  # the page's script modules (center.api.dashboard
    # serves the names in its MODULES, 404 for any other) and style: no data in them
    ("GET", "/static/dashboard.css", PUBLIC),
    ("POST", "/api/v1/session", PUBLIC),  # sign-in itself
    ("GET", "/api/v1/session", SIGNED_IN),
    ("DELETE", "/api/v1/session", SIGNED_IN),
    ("GET", "/metrics", READ),
    ("GET", "/openapi.json", READ),
    ("GET", "/docs", READ),
    ("GET", "/docs/oauth2-redirect", READ),
    ("GET", "/redoc", READ),
    ("GET", "/api/v1/cases", READ),
    ("GET", "/api/v1/cases/stream", READ),
    ("GET", "/api/v1/cases/{case_id}", READ),
    ("GET", "/api/v1/cases/{case_id}/history", READ),
    ("POST", "/api/v1/cases/{case_id}/transitions", TRANSITION),
    ("GET", "/api/v1/stats", READ),
    ("GET", "/api/v1/stations", READ),
    ("GET", "/api/v1/sensors/{sensor_id}", READ),
    ("GET", "/api/v1/map", READ),
    ("GET", "/api/v1/rejects", READ),
    ("GET", _RULES, RULES),
    ("PUT", _RULES, RULES),
    ("GET", f"{_RULES}/effective/{{sensor_id}}", RULES),
    ("GET", f"{_RULES}/shadow", RULES),
    ("PUT", f"{_RULES}/shadow", RULES),
    ("DELETE", f"{_RULES}/shadow", RULES),
    ("GET", "/api/v1/users", ADMIN),
    ("POST", "/api/v1/users", ADMIN),
    ("GET", "/api/v1/tokens", ADMIN),
    ("POST", "/api/v1/tokens", ADMIN),
    ("DELETE", "/api/v1/tokens/{token_id}", ADMIN),
)

_PARAMETER = re.compile(r"\{[^}/]+\}")


def _pattern(template: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(template)
    return re.compile("[^/]+".join(re.escape(part) for part in parts) + r"\Z")


@dataclass(frozen=True)
class Rule:
    method: str
    template: str
    access: Access
    pattern: re.Pattern[str]


class AccessPolicy:
    def __init__(self, routes: Iterable[tuple[str, str, Access]] = ROUTES) -> None:
        self.rules = tuple(Rule(m, t, a, _pattern(t)) for m, t, a in routes)

    def rule(self, method: str, path: str) -> Rule | None:
        """The table's entry for a request, or ``None`` (then ``DEFAULT`` applies)."""
        method = "GET" if method == "HEAD" else method
        for rule in self.rules:
            if rule.method == method and rule.pattern.match(path):
                return rule
        return None

    def access(self, method: str, path: str) -> Access:
        found = self.rule(method, path)
        return DEFAULT if found is None else found.access

    def explicit(self, method: str, template: str) -> Access | None:
        """The entry written for a route template (not matched: named), or ``None``."""
        for rule in self.rules:
            if (rule.method, rule.template) == (method, template):
                return rule.access
        return None


def roles_with(access: Access) -> list[Role]:
    if access in (PUBLIC, SIGNED_IN):
        return list(Role)
    return [role for role in Role if role.allows(Permission(access))]
