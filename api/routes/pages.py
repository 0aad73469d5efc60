"""Pages for people: the dashboard (api/static/dashboard.html and its script) and the API docs (Swagger UI,
vendored into api/static/vendor/ from the npm registry, with api/static/docs.js). Neither page holds data: the
dashboard asks for a key and reads everything through the API with it; the docs read /openapi.json."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
# Only this origin's scripts, styles and connections: nothing from the internet, no inline script.
POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
router = APIRouter()


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache", "Content-Security-Policy": POLICY})


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    return _page("dashboard.html")


@router.get("/docs", include_in_schema=False)
async def docs() -> FileResponse:
    return _page("docs.html")
