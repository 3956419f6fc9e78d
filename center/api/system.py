"""``/healthz``, ``/api/v1/health`` and ``/metrics``: what the composition root reports about
the node.

Both health routes run the injected dependency checks (broker, database, time-series store…)
concurrently, each within ``CHECK_TIMEOUT_S``, and answer 503 unless every one is ok; a check
that raises or times out counts as down. ``/healthz`` is public (load balancers and systemd
probe it) and says only that: the status and which checks are ok. Everything else — the node's
counters, each check's detail (an exception's text, a webhook receiver's refusal) — is for
signed-in readers at ``/api/v1/health``: a probe needs no more, and an outsider should learn
nothing about the deployment from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from center.views import HealthCheck

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CHECK_TIMEOUT_S = 2.0

HealthProbe = Callable[[], Mapping[str, object]]
MetricsExporter = Callable[[], bytes]

HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every dependency check is ok."},
    503: {"description": "A dependency is down: see `checks`."},
}
HEALTH_PATH = "/api/v1/health"


async def run_check(check: HealthCheck, limit_s: float = CHECK_TIMEOUT_S) -> dict[str, object]:
    try:
        async with asyncio.timeout(limit_s):
            ok, detail = await check()
    except TimeoutError:
        ok, detail = False, f"no answer within {limit_s:g}s"
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return {"ok": bool(ok), "detail": detail}


def system_router(
    health: HealthProbe | None,
    metrics: MetricsExporter | None,
    checks: Mapping[str, HealthCheck] | None = None,
) -> APIRouter:
    router = APIRouter(tags=["system"])
    named = dict(checks or {})

    async def checked() -> tuple[bool, dict[str, dict[str, object]]]:
        results = await asyncio.gather(*(run_check(check) for check in named.values()))
        return all(r["ok"] for r in results), dict(zip(named, results, strict=True))

    @router.get("/healthz", response_model=dict[str, object], responses=HEALTH_RESPONSES)
    async def healthz() -> JSONResponse:
        """Public: ``status`` (``ok`` / ``unavailable``) and, with dependency checks
        configured, ``checks``: ``{name: {"ok": bool}}``. The details are at
        ``/api/v1/health``."""
        all_ok, results = await checked()
        body: dict[str, object] = {"status": "ok" if all_ok else "unavailable"}
        if named:
            body["checks"] = {name: {"ok": result["ok"]} for name, result in results.items()}
        return JSONResponse(body, status_code=200 if all_ok else 503)

    @router.get(HEALTH_PATH, response_model=dict[str, object], responses=HEALTH_RESPONSES)
    async def health_detail() -> JSONResponse:
        """``status`` (``ok`` / ``unavailable``), the node's counters, and with dependency
        checks configured ``checks``: ``{name: {"ok": bool, "detail": str}}``."""
        all_ok, results = await checked()
        body: dict[str, object] = {"status": "ok" if all_ok else "unavailable"}
        body.update(health() if health is not None else {})
        if named:
            body["checks"] = results
        return JSONResponse(body, status_code=200 if all_ok else 503)

    if metrics is not None:
        export = metrics

        @router.get("/metrics", response_class=Response)
        async def prometheus_metrics() -> Response:
            return Response(export(), media_type=PROMETHEUS_CONTENT_TYPE)

    return router
