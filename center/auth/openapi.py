"""The access table in the OpenAPI document: security schemes (bearer token, session cookie),
each operation's requirement, its 401/403 answers, and ``x-citysense-access``."""

from __future__ import annotations

from typing import Any

from center.auth.middleware import SESSION_COOKIE
from center.auth.policy import PUBLIC, SIGNED_IN, AccessPolicy, roles_with

SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `citysense users token NAME --role ROLE --name WHAT`,"
        " or `POST /api/v1/tokens` (admin).",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The browser session `POST /api/v1/session` sets.",
    },
}
ERROR: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "properties": {"detail": {"title": "Detail", "type": "string"}},
    "required": ["detail"],
}


def _answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def secure_document(document: dict[str, Any], policy: AccessPolicy) -> dict[str, Any]:
    """Add the access table to ``document`` (changed in place, and returned)."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = SCHEMES
    components.setdefault("schemas", {})["Error"] = ERROR
    document["security"] = [{"bearer": []}, {"session": []}]
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            access = policy.access(method.upper(), path)
            operation["x-citysense-access"] = str(access)
            if access == PUBLIC:
                operation["security"] = []
                continue
            who = (
                "any signed-in user"
                if access == SIGNED_IN
                else ", ".join(role.value for role in roles_with(access))
            )
            note = f"Access: {access} ({who})."
            operation["description"] = (
                f"{operation['description']}\n\n{note}" if operation.get("description") else note
            )
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _answer("Not signed in: no credential, or not a live one."))
            if access != SIGNED_IN:
                responses.setdefault("403", _answer("Signed in with a role that may not do it."))
    return document
