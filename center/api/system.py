"""``/healthz`` and ``/metrics``: what the composition root reports about the node."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import APIRouter, Response

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HealthProbe = Callable[[], Mapping[str, object]]
MetricsExporter = Callable[[], bytes]


def system_router(health: HealthProbe | None, metrics: MetricsExporter | None) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/healthz")
    async def healthz() -> dict[str, object]:
        details = dict(health()) if health is not None else {}
        return {"status": "ok", **details}

    if metrics is not None:
        export = metrics

        @router.get("/metrics", response_class=Response)
        async def prometheus_metrics() -> Response:
            return Response(export(), media_type=PROMETHEUS_CONTENT_TYPE)

    return router
