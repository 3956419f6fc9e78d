"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from center.auth import PRINCIPAL_KEY, Accounts, Principal
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


def current_principal(request: Request) -> Principal:
    """Who made the request, as the auth middleware found it (``center.auth``). A public route
    has nobody: asking there is a 401."""
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="not signed in")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def signed_in_actor(principal: PrincipalDep) -> str:
    """The name of the signed-in user: the actor of what the request does."""
    return principal.name


SignedInDep = Annotated[str, Depends(signed_in_actor)]


def get_accounts(request: Request) -> Accounts:
    accounts = request.app.state.accounts
    if not isinstance(accounts, Accounts):
        raise RuntimeError("app.state.accounts is not Accounts: build the app with create_app")
    return accounts


AccountsDep = Annotated[Accounts, Depends(get_accounts)]


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
