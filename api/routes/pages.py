"""Pages for people: the dashboard (api/static/dashboard.html and its script) and the API docs (Swagger UI,
vendored into api/static/vendor/ from the npm registry, with api/static/docs.js). Neither page holds data: the
dashboard asks for a key and reads everything through the API with it; the docs read /openapi.json."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

STATIC = Path(__file__).resolve().parents[1] / "static"
# Only this origin's scripts, styles and connections: nothing from the internet, no inline script.
POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
router = APIRouter()


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache", "Content-Security-Policy": POLICY})


FIRST_PAGE = {
    "name": "warehouse-tracker",
    "docs": "/docs",
    "openapi": "/openapi.json",
    "dashboard": "/dashboard",
    "key": "Every other route needs `Authorization: Bearer <key>`. Make one where the API runs: `python -m api "
    "create-key --name <who> --role viewer|operator|admin` (in containers: `docker compose exec api python -m api "
    'create-key …`), or POST /api-keys with an admin key (docs/api.md, "Keys and roles").',
}


@router.get("/", include_in_schema=False)
async def first_page(request: Request) -> Response:
    """Where the address alone leads: a browser to the dashboard (which asks for a key), a client to what it
    needs to start — the docs, the OpenAPI document and how to get a key. The Location is a path: no host."""
    vary = {"Vary": "Accept"}  # a cache must not hand one kind of caller's answer to the other
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/dashboard", status_code=303, headers=vary)
    return JSONResponse(FIRST_PAGE, headers=vary)


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    return _page("dashboard.html")


@router.get("/docs", include_in_schema=False)
async def docs() -> FileResponse:
    return _page("docs.html")
