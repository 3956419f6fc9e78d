"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from center.broadcast import CaseBroadcaster
from center.service import CaseService
from center.store import CaseStore


def get_service(request: Request) -> CaseService:
    service = request.app.state.service
    if not isinstance(service, CaseService):
        raise RuntimeError("app.state.service is not a CaseService: build the app with create_app")
    return service


ServiceDep = Annotated[CaseService, Depends(get_service)]


def get_store(service: ServiceDep) -> CaseStore:
    return service.store


def get_broadcaster(service: ServiceDep) -> CaseBroadcaster:
    return service.broadcaster


StoreDep = Annotated[CaseStore, Depends(get_store)]
BroadcasterDep = Annotated[CaseBroadcaster, Depends(get_broadcaster)]
