"""The center's HTTP app. The composition root owns the service; this only serves it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from center.api import cases, dashboard
from center.api.system import HealthProbe, MetricsExporter, system_router
from center.errors import StoreError
from center.service import CaseService

log = logging.getLogger(__name__)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "case store unavailable"}, status_code=503)


def create_app(
    service: CaseService,
    *,
    health: HealthProbe | None = None,
    metrics: MetricsExporter | None = None,
) -> FastAPI:
    """The API (``/api/v1/cases``…), ``/healthz``, ``/metrics`` (when given) and the dashboard.

    ``health()`` entries are merged into ``{"status": "ok"}`` (it may override ``status``).
    """
    app = FastAPI(title="citysense center", version="1", summary="Urgent-handling center")
    app.state.service = service
    app.add_exception_handler(StoreError, _store_unavailable)
    app.include_router(cases.router)
    app.include_router(system_router(health, metrics))
    app.include_router(dashboard.router)
    return app
