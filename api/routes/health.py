"""For operators and orchestrators: liveness, readiness and Prometheus metrics."""

import asyncio

from fastapi import APIRouter, Request, Response

from api.models import Health
from api.problems import DatabaseUnavailable, responses
from api.routes.common import store
from common.metrics import CONTENT_TYPE
from db.migrate import discover

router = APIRouter(tags=["operations of the service"])
READY_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> Health:
    """The process answers. No key needed."""
    return Health(status="ok")


@router.get("/readyz", responses={503: responses(DatabaseUnavailable)[503]})
async def readyz(request: Request) -> Health:
    """PostgreSQL answers (within 2 s) and has every migration this code knows. No key needed."""
    db, newest = store(request), discover()[-1]

    async def migrated() -> bool:
        return bool(await db.fetchval("migrations_table_exists") and await db.fetchval("migrated_to", newest.version))

    try:
        ready = await asyncio.wait_for(migrated(), READY_TIMEOUT_S)
    except TimeoutError as e:
        raise DatabaseUnavailable(
            f"PostgreSQL did not answer within {READY_TIMEOUT_S:g} s", headers={"Retry-After": "1"}
        ) from e
    if not ready:
        raise DatabaseUnavailable(f"the database lacks migration {newest.name}: run `python -m db migrate`")
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={**responses(), 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format: requests by route and status code, their latency, and the process's memory, CPU
    and open files. Needs a key (viewer): give Prometheus one in its scrape config (`authorization: {credentials:
    <key>}`)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
