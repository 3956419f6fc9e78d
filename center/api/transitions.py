"""``/api/v1/cases/{case_id}/transitions`` and ``/history``: move a case through the 7 steps,
and its audit trail (``center.lifecycle``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from center.api.deps import ServiceDep, SignedInDep, StoreDep
from center.api.responses import CASE_NOT_FOUND, STORE_DOWN
from center.errors import CaseNotFoundError, TransitionRefusedError
from center.schemas import CaseHistory, CaseOut, TransitionIn, TransitionRefusal
from center.schemas_query import CaseId

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {**CASE_NOT_FOUND, **STORE_DOWN}


@router.post(
    "/{case_id}/transitions",
    response_model=CaseOut,
    responses={
        409: {"model": TransitionRefusal, "description": "Its step does not allow it: why."},
        **NOT_FOUND,
    },
)
async def transition_case(
    case_id: CaseId, body: TransitionIn, service: ServiceDep, actor: SignedInDep
) -> CaseOut | JSONResponse:
    """Move the case by ``action``, or to the step ``to``; answers the case after the move.
    The move, its audit entry and its event are stored together. The actor is the signed-in
    user; a body ``actor`` naming anybody else is refused (403)."""
    if body.actor is not None and body.actor != actor:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"signed in as {actor}: cannot act as {body.actor} (leave actor out)",
        )
    try:
        return await service.transition(
            case_id, action=body.action, to=body.to, actor=actor, note=body.note
        )
    except CaseNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"case {case_id} not found") from None
    except TransitionRefusedError as exc:
        refusal = TransitionRefusal.model_validate(
            {"detail": exc.reason, "step": exc.step, "action": exc.action, "allowed": exc.allowed}
        )
        return JSONResponse(refusal.model_dump(mode="json"), status_code=409)


@router.get("/{case_id}/history", response_model=CaseHistory, responses=NOT_FOUND)
async def case_history(case_id: CaseId, store: StoreDep) -> CaseHistory:
    """The case's audit trail, oldest first: who moved it, when, from which step to which."""
    items = await store.history(case_id)
    if items is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"case {case_id} not found")
    return CaseHistory(case_id=case_id, items=items)
