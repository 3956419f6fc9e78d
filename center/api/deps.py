"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from center.broadcast import CaseBroadcaster, Subscription
from center.service import CaseService
from center.store import CaseStore
from center.views import RegistryView, RejectStore


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


async def live_subscription(broadcaster: BroadcasterDep) -> AsyncIterator[Subscription]:
    """Live case events for as long as the request lasts (a stream): subscribed before the
    route and its other dependencies run."""
    async with broadcaster.subscribe() as live:
        yield live


LiveDep = Annotated[Subscription, Depends(live_subscription)]


def signed_in_actor(request: Request) -> str | None:
    """Who signed in to make the request: nobody yet (sign-in comes later), so the body's
    ``actor`` is used. With sign-in, this returns the user and the body's actor is ignored."""
    return None


SignedInDep = Annotated[str | None, Depends(signed_in_actor)]


def get_registry(request: Request) -> RegistryView:
    registry: RegistryView | None = request.app.state.registry
    if registry is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="no station registry on this node"
        )
    return registry


def get_rejects(request: Request) -> RejectStore:
    rejects: RejectStore | None = request.app.state.rejects
    if rejects is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="no dead letters on this node"
        )
    return rejects


RegistryDep = Annotated[RegistryView, Depends(get_registry)]
RejectsDep = Annotated[RejectStore, Depends(get_rejects)]
