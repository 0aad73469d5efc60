"""The composition root of the API process: settings → store, key cache, metrics, live feed → the FastAPI app."""

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import problems
from api.auth import AuthMiddleware, FailureLimit, KeyCache, document_security
from api.config import ApiSettings
from api.head import HeadMiddleware
from api.limits import BodyLimitMiddleware
from api.live import LiveFeed
from api.metrics import MetricsMiddleware, RequestMetrics
from api.problems import DatabaseUnavailable
from api.routes import (
    balances,
    catalog,
    documents,
    health,
    history,
    keys,
    ledger,
    live,
    operations,
    pages,
    reports,
)
from api.store import Store
from common.metrics import serve

log = logging.getLogger(__name__)
FORGET_EVERY_S = 3600.0
OUTBOX_EVERY_S = 5.0

DESCRIPTION = """Stock balances and statuses of every product at every warehouse, the global count of status
changes, their history and live stream, and the operations that change them. Every route but /, /healthz,
/readyz, the docs and the dashboard's page needs an API key: `Authorization: Bearer <key>`. Errors are RFC 9457
problem details with a stable `type`."""


async def forget_idempotency_keys(store: Store, hours: int) -> None:
    """Hourly: results of writes older than API_IDEMPOTENCY_HOURS are dropped; their keys can be used anew."""
    while True:
        try:
            forgotten = await store.fetchval("forget_idempotency_keys", hours)
            log.info("forgot %d idempotency keys older than %d h", forgotten, hours)
        except DatabaseUnavailable as e:
            log.warning("could not forget old idempotency keys: %s", e.detail)
        except Exception:  # a bug here must not end the task: keys would never be forgotten again
            log.exception("could not forget old idempotency keys")
        await asyncio.sleep(FORGET_EVERY_S)


async def end_streams_of_revoked_keys(store: Store, live: LiveFeed, every: float) -> None:
    """Every `every` seconds (the key cache's lifetime), one query: the live streams whose key has been revoked
    since they opened, through any API process or in SQL, are ended with the reason. While PostgreSQL is out of
    reach, streams go on (nobody can revoke a key then either)."""
    while True:
        await asyncio.sleep(every)
        opened_by = live.key_ids()
        if not opened_by:
            continue
        try:
            active = {row["id"] for row in await store.fetch("active_api_keys", list(opened_by))}
        except DatabaseUnavailable:
            continue
        except Exception:  # a bug here must not end the task: revoked keys' streams would run on
            log.exception("could not check the live streams' keys")
            continue
        live.end_for_keys(opened_by - active)


async def read_outbox(store: Store, metrics: RequestMetrics) -> None:
    """Every OUTBOX_EVERY_S: the outbox gauges. While PostgreSQL is out of reach they are NaN (unknown), so no
    alert fires on a stale figure; /readyz and the 503s say why."""
    while True:
        try:
            row = await store.fetchrow("outbox_backlog")
            assert row is not None  # an aggregate without GROUP BY returns one row
            metrics.outbox_backlog.set(row["events"])
            metrics.outbox_oldest_age.set(row["oldest_age_s"])
        except DatabaseUnavailable:
            metrics.outbox_backlog.set(math.nan)
            metrics.outbox_oldest_age.set(math.nan)
        except Exception:  # a bug here must not end the task: the gauges would stay as they are
            log.exception("could not read the outbox's backlog")
        await asyncio.sleep(OUTBOX_EVERY_S)


def create_app(settings: ApiSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Store.open(settings.database_url, settings.api_pool_size, settings.api_statement_timeout) as store:
            app.state.store = store
            try:
                metrics_server = await serve(
                    app.state.metrics.registry, lambda: health.readiness(app),
                    settings.api_metrics_host, settings.api_metrics_port,
                )  # fmt: skip
            except OSError as e:
                log.error(
                    "cannot serve metrics on %s:%d: %s (set API_METRICS_PORT)",
                    settings.api_metrics_host, settings.api_metrics_port, e,
                )  # fmt: skip
                raise
            chores = [
                asyncio.create_task(
                    forget_idempotency_keys(store, settings.api_idempotency_hours), name="forget-idempotency-keys"
                ),
                asyncio.create_task(read_outbox(store, app.state.metrics), name="read-outbox"),
                asyncio.create_task(
                    end_streams_of_revoked_keys(store, app.state.live, settings.api_key_cache_seconds or 1.0),
                    name="end-streams-of-revoked-keys",
                ),
            ]
            try:
                yield
            finally:
                await app.state.live.close()
                metrics_server.close()
                await metrics_server.wait_closed()
                for chore in chores:
                    chore.cancel()
                await asyncio.gather(*chores, return_exceptions=True)

    app = FastAPI(
        title="warehouse-tracker", version="1", description=DESCRIPTION, lifespan=lifespan,
        # The docs page is api/routes/pages.py's (Swagger UI vendored, not from a CDN); no ReDoc. No redirect of
        # /path/ to /path: Starlette's would name the Host header's server in Location.
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None, redirect_slashes=False,
        # FastAPI's OpenTelemetry hooks look up three providers on every request; /metrics is this API's telemetry.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )  # fmt: skip
    app.state.keys = KeyCache(settings.api_key_cache_seconds)
    app.state.metrics = RequestMetrics()
    app.state.live = LiveFeed(settings.kafka_bootstrap_servers, settings.kafka_topic, settings.api_live_queue)
    problems.install(app)
    for module in (balances, operations, documents, ledger, reports, catalog, history, live, keys, health, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(
        AuthMiddleware, keys=app.state.keys, failures=FailureLimit(settings.api_auth_failures_per_minute)
    )
    app.add_middleware(HeadMiddleware)
    # The outermost: it counts every answer, the middlewares' own 401s and 413s too (under the route the path
    # would have reached).
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = problems.document_problems(FastAPI.openapi(app))
            app.openapi_schema = document_security(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
