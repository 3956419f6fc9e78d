"""``/``: the live dashboard, a static page with its script modules and style sheet (no build
step: the browser loads ``dashboard.js`` as a module and it imports the others).

Every answer carries a Content-Security-Policy that allows nothing from elsewhere: the page,
its script and style come from the center, and the page talks to the center only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
DASHBOARD = STATIC / "index.html"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD, media_type="text/html; charset=utf-8", headers=HEADERS)


MODULES = frozenset({"dashboard", "common", "words", "map", "caseview"})
"""The page's script modules (``center/static/<name>.js``): these names and no other path."""


@router.get("/static/{module}.js")
async def dashboard_script(module: str) -> FileResponse:
    if module not in MODULES:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(
        STATIC / f"{module}.js", media_type="text/javascript; charset=utf-8", headers=HEADERS
    )


@router.get("/static/dashboard.css")
async def dashboard_style() -> FileResponse:
    return FileResponse(
        STATIC / "dashboard.css", media_type="text/css; charset=utf-8", headers=HEADERS
    )
