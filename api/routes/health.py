"""For operators and orchestrators: liveness and readiness. (Prometheus metrics are on a port of their own,
API_METRICS_PORT, with /healthz and /readyz again: see api/app.py.)"""

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from api.models import Health, Readiness
from api.problems import DatabaseUnavailable, responses
from db.migrate import discover

router = APIRouter(tags=["operations of the service"])
READY_TIMEOUT_S = 2.0


async def readiness(app: Any) -> tuple[bool, dict[str, object]]:
    """Ready when PostgreSQL answers within 2 s and has every migration this code knows. Kafka, which only the live
    streams need, is reported but not required. Each dependency: "ok" or why not, in words."""
    store, newest = app.state.store, discover()[-1]

    async def migrated() -> bool:
        return bool(
            await store.fetchval("migrations_table_exists") and await store.fetchval("migrated_to", newest.version)
        )

    try:
        ok = await asyncio.wait_for(migrated(), READY_TIMEOUT_S)
        postgresql = "ok" if ok else f"PostgreSQL lacks migration {newest.name}: run `python -m db migrate`"
    except TimeoutError:
        postgresql = f"PostgreSQL did not answer within {READY_TIMEOUT_S:g} s"
    except DatabaseUnavailable as e:
        postgresql = e.detail
    ready = postgresql == "ok"
    return ready, {
        "status": "ready" if ready else "unready",
        "postgresql": postgresql,
        "kafka": app.state.live.health(),
    }


@router.get("/healthz")
async def healthz() -> Health:
    """The process answers. No key needed."""
    return Health(status="ok")


@router.get("/readyz", responses={503: responses(DatabaseUnavailable)[503]})
async def readyz(request: Request) -> Readiness:
    """PostgreSQL answers (within 2 s) and has every migration this code knows; `postgresql` and `kafka` say how
    each dependency is ("ok", or why not). No key needed."""
    ready, state = await readiness(request.app)
    if not ready:
        raise DatabaseUnavailable(
            str(state["postgresql"]), headers={"Retry-After": "1"}, postgresql=state["postgresql"], kafka=state["kafka"]
        )
    return Readiness(status="ready", postgresql="ok", kafka=str(state["kafka"]))
