"""``/api/v1/rules``: the running rule set with its versions, and a new set to run.

Answers 503 when the node was built without rules control (``create_app(rules=None)``).
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse

from center.api.responses import ValidationProblem
from center.schemas_rules import (
    EffectiveRules,
    RulesApplied,
    RulesIn,
    RulesOut,
    RulesRefusal,
    RulesVersionOut,
    ShadowReport,
)
from center.views import RulesAdmin
from rules import ReadOnlyRulesError, RuleError

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


def get_rules(request: Request) -> RulesAdmin:
    rules: RulesAdmin | None = request.app.state.rules
    if rules is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="no rules control here")
    return rules


RulesDep = Annotated[RulesAdmin, Depends(get_rules)]
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "This node has no rules control."}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": RulesRefusal | ValidationProblem,
        "description": "Refused, with every reason (the running rules stay); or a body that"
        " is not `RulesIn` (`detail` lists what is wrong).",
    },
}


@router.get("", response_model=RulesOut, responses=UNAVAILABLE)
async def get_rule_set(rules: RulesDep) -> RulesOut:
    """The running rule set, its version and every version before it (author, time, diff)."""
    current = rules.current
    parsed = yaml.safe_load(current.text) or {}
    return RulesOut(
        version=current.version,
        path=None if rules.path is None else str(rules.path),
        sha256=current.sha256,
        yaml=current.text,
        rules=list(parsed.get("rules", [])) if isinstance(parsed, dict) else [],
        history=[
            RulesVersionOut(
                version=v.version,
                at=v.at,
                author=v.author,
                source=v.source,
                sha256=v.sha256,
                diff=v.diff,
            )
            for v in rules.history
        ],
    )


@router.put(
    "",
    response_model=RulesApplied,
    responses={
        409: {"description": "The node runs the built-in rules (no file to write)."},
        **REFUSED,
        **UNAVAILABLE,
    },
)
async def put_rule_set(body: RulesIn, rules: RulesDep) -> RulesApplied | JSONResponse:
    """Validate a whole rule file and run it from the next unit of work on. Rules whose id
    survives keep their state (pending holds, open incidents, baselines)."""
    try:
        version = await rules.apply(body.yaml, body.author)
    except RuleError as exc:
        refusal = RulesRefusal(detail="rule set refused", reasons=exc.reasons)
        return JSONResponse(refusal.model_dump(), status_code=422)
    except ReadOnlyRulesError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return RulesApplied(version=version.version, sha256=version.sha256)


@router.get(
    "/effective/{sensor_id}",
    response_model=EffectiveRules,
    responses={
        404: {"description": "No birth names it and it never sent a reading."},
        **UNAVAILABLE,
    },
)
async def get_effective(sensor_id: str, rules: RulesDep) -> EffectiveRules:
    """Every setting of every rule of the sensor's kind as it applies to this sensor, with the
    level it comes from: kind (the rule) -> district -> station -> sensor."""
    found = rules.effective(sensor_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown sensor {sensor_id}")
    return EffectiveRules.model_validate(found)


SHADOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No shadow run is going."},
    **UNAVAILABLE,
}


@router.get("/shadow", response_model=ShadowReport, responses=SHADOW_RESPONSES)
async def get_shadow(rules: RulesDep) -> ShadowReport:
    """What the candidate rule set would have opened or missed, compared with the live one."""
    shadow = rules.shadow
    if shadow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no shadow run")
    return ShadowReport.model_validate(shadow.report())


@router.put(
    "/shadow",
    response_model=ShadowReport,
    responses={**REFUSED, **UNAVAILABLE},
)
async def put_shadow(body: RulesIn, rules: RulesDep) -> ShadowReport | JSONResponse:
    """Run a candidate rule set beside the live one on live traffic, opening no case (replaces
    a shadow run already going). It starts from the live engine's state."""
    try:
        shadow = await rules.start_shadow(body.yaml, body.author)
    except RuleError as exc:
        refusal = RulesRefusal(detail="rule set refused", reasons=exc.reasons)
        return JSONResponse(refusal.model_dump(), status_code=422)
    return ShadowReport.model_validate(shadow.report())


@router.delete("/shadow", response_model=ShadowReport, responses=SHADOW_RESPONSES)
async def delete_shadow(rules: RulesDep) -> ShadowReport:
    """Stop the shadow run; answers its final report."""
    shadow = await rules.stop_shadow()
    if shadow is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no shadow run")
    return ShadowReport.model_validate(shadow.report())
