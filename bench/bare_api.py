"""The baseline of `make bench-api`: a bare Starlette endpoint with an asyncpg pool, running the API's query for one
balance and returning its row as JSON. No auth, no validation, no metrics: the floor the API's overhead is
measured against. `python -m bench.bare_api` (DATABASE_URL, API_PORT, API_POOL_SIZE, as the API)."""

import contextlib
import json
import os
from collections.abc import AsyncIterator

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.queries import queries

QUERY = queries("api")["balance"]


def app(url: str, pool_size: int) -> Starlette:
    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        async with asyncpg.create_pool(url, min_size=0, max_size=pool_size) as pool:
            yield

    async def balance(request: Request) -> Response:
        assert pool is not None
        product, warehouse = int(request.path_params["p"]), int(request.path_params["w"])
        row = await pool.fetchrow(QUERY, product, warehouse)
        assert row is not None
        body = {"product_id": product, "warehouse_id": warehouse, "quantity": row["quantity"] or 0,
                "status": row["status"] or "out_of_stock",
                "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None}  # fmt: skip
        return Response(json.dumps(body), media_type="application/json")

    return Starlette(routes=[Route("/balances/product/{p}/warehouse/{w}", balance)], lifespan=lifespan)


if __name__ == "__main__":
    uvicorn.run(
        app(os.environ["DATABASE_URL"], int(os.environ.get("API_POOL_SIZE", "10"))),
        host="127.0.0.1", port=int(os.environ["API_PORT"]), log_level="warning", access_log=False,
    )  # fmt: skip
