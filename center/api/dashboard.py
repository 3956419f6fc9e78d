"""``/``: the live dashboard, one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

DASHBOARD = Path(__file__).resolve().parent.parent / "static" / "index.html"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD, media_type="text/html; charset=utf-8")
