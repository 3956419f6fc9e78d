"""The answers the framework gives by itself, made to keep to the OpenAPI document: a body that
cannot be read (400) is documented on every route that takes one, and a 405 lists every method
its path has in ``Allow`` (Starlette names only those of the first route of the path)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException

from center.api.responses import Problem

BAD_BODY_DOCUMENT: dict[str, Any] = {
    "description": "The body cannot be read (not UTF-8 JSON).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def _path_methods(request: Request) -> list[str]:
    path = request.scope["path"]
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_regex.match(path):
            methods |= context.methods or set()
    return sorted(methods)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    methods = _path_methods(request)
    headers = {**(exc.headers or {}), "Allow": ", ".join(methods)} if methods else exc.headers
    return await http_exception_handler(
        request, HTTPException(exc.status_code, exc.detail, headers=headers)
    )


def document_bad_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Add the 400 FastAPI answers for a body it cannot read (not UTF-8) to every operation
    that takes a body."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Problem", Problem.model_json_schema())
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("400", BAD_BODY_DOCUMENT)
    return document


def install_error_answers(app: FastAPI) -> None:
    """Call once every router is included: the 405 handler, and the document's 400s."""
    app.add_exception_handler(405, method_not_allowed)
    build = app.openapi

    def documented() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_bad_bodies(build())
        return app.openapi_schema

    app.openapi = documented  # type: ignore[method-assign]
