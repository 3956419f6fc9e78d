"""The center's HTTP app. The composition root owns the service; this only serves it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from center.api import accounts as accounts_api
from center.api import cases, city_map, dashboard, sensors, session, stations, transitions
from center.api import rejects as rejects_api
from center.api import rules as rules_api
from center.api import stats as stats_api
from center.api.errors import install_error_answers
from center.api.system import HealthProbe, MetricsExporter, system_router
from center.auth import AccessPolicy, Accounts, AuthMiddleware
from center.auth.openapi import secure_document
from center.errors import StoreError
from center.service import CaseService
from center.views import HealthCheck, RegistryView, RejectStore, RulesAdmin

log = logging.getLogger(__name__)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "case store unavailable"}, status_code=503)


def create_app(
    service: CaseService,
    *,
    auth: Accounts,
    secure_cookies: bool = False,
    health: HealthProbe | None = None,
    metrics: MetricsExporter | None = None,
    checks: Mapping[str, HealthCheck] | None = None,
    registry: RegistryView | None = None,
    rejects: RejectStore | None = None,
    rules: RulesAdmin | None = None,
) -> FastAPI:
    """The API (``/api/v1/cases``, ``/stations``, ``/sensors``, ``/map``, ``/rejects``, ``/rules``,
    ``/session``, ``/users``, ``/tokens``), ``/healthz``, ``/metrics`` (when given) and the
    dashboard.

    ``health()`` entries are merged into ``{"status": "ok"}`` (it may override ``status``).
    ``checks`` are the dependency probes ``/healthz`` runs: 503 unless all are ok.
    Without ``registry`` the stations and sensors routes answer 503, without ``rejects``
    the rejects route does, without ``rules`` ``/api/v1/rules`` does.

    Every route but ``/healthz``, the dashboard's page and sign-in needs a credential that
    ``auth`` knows and the permission ``center.auth.policy`` gives it (default deny, enforced
    for the whole app by ``AuthMiddleware``). ``secure_cookies``: mark the session cookie
    ``Secure`` even on plain HTTP (production, behind a TLS proxy); else only over HTTPS.
    """
    app = FastAPI(title="citysense center", version="1", summary="Urgent-handling center")
    app.state.service = service
    app.state.registry = registry
    app.state.rejects = rejects
    app.state.rules = rules
    app.state.accounts = auth
    app.state.secure_cookies = secure_cookies
    policy = AccessPolicy()
    app.add_middleware(AuthMiddleware, accounts=auth, policy=policy)
    app.add_exception_handler(StoreError, _store_unavailable)
    app.include_router(session.router)
    app.include_router(accounts_api.router)
    app.include_router(cases.router)
    app.include_router(transitions.router)
    app.include_router(stats_api.router)
    app.include_router(stations.router)
    app.include_router(sensors.router)
    app.include_router(city_map.router)
    app.include_router(rejects_api.router)
    app.include_router(rules_api.router)
    app.include_router(system_router(health, metrics, checks))
    app.include_router(dashboard.router)
    install_error_answers(app)
    document = app.openapi

    def secured_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = secure_document(document(), policy)
        return app.openapi_schema

    app.openapi = secured_openapi  # type: ignore[method-assign]
    return app
