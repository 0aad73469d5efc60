"""The dashboard, a page for people: api/static/dashboard.html and its script. The page holds no data: it asks
for a key and reads everything through the API with it."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    # Only this origin's scripts, styles and connections: nothing from the internet, no inline script.
    policy = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    return FileResponse(
        STATIC / "dashboard.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy}
    )
