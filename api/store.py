"""The API's adapter to PostgreSQL: a connection pool, the named queries of db/sql/api.sql, and the translation of
driver errors into the API's errors (the database's own rules raise WH001 to WH003; see db/migrations)."""

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from pydantic import BaseModel

from api.auth import Caller
from api.problems import (
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InsufficientStock,
    UnknownProduct,
    UnknownWarehouse,
)
from db.errors import connection_lost, lost_because, retry_reason
from db.queries import queries

Q = queries("api")


def _fields(detail: str | None) -> dict[str, str]:
    """`product_id=3 warehouse_id=5` (the DETAIL of the database's own errors) as a dict."""
    return dict(part.split("=", 1) for part in (detail or "").split() if "=" in part)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Driver errors become the API's: a rule of the database → 4xx, PostgreSQL out of reach → 503."""
    try:
        yield
    except Exception as e:
        if connection_lost(e):  # PostgreSQL's own too: starting up, shutting down, the connection failed
            raise DatabaseUnavailable(
                f"PostgreSQL cannot be reached: {lost_because(e)}; try again", headers={"Retry-After": "1"}
            ) from e
        if not isinstance(e, asyncpg.PostgresError):
            raise
        sqlstate = getattr(e, "sqlstate", None)
        fields = _fields(getattr(e, "detail", None))
        if sqlstate == "WH001":
            available, requested = int(fields["available"]), int(fields["requested"])
            insufficient = InsufficientStock(
                f"product {fields['product_id']} at warehouse {fields['warehouse_id']} has {available}, "
                f"the operation requests {requested}; nothing was changed",
                available=available, requested=requested,
            )  # fmt: skip
            insufficient.row = int(fields.get("row", 1))
            insufficient.pair = (int(fields["product_id"]), int(fields["warehouse_id"]))
            raise insufficient from e
        if sqlstate == "WH002":
            product = UnknownProduct(f"product {fields.get('product_id')} does not exist")
            product.missing = int(fields.get("product_id", 0))
            raise product from e
        if sqlstate == "WH003":
            warehouse = UnknownWarehouse(f"warehouse {fields.get('warehouse_id')} does not exist")
            warehouse.missing = int(fields.get("warehouse_id", 0))
            raise warehouse from e
        if sqlstate == "57014":  # statement_timeout
            raise DatabaseUnavailable(
                "the database did not answer in time (API_STATEMENT_TIMEOUT); try again", headers={"Retry-After": "1"}
            ) from e
        if retry_reason(e):  # a connection lost, a deadlock, out of connections or memory…
            raise DatabaseUnavailable(f"PostgreSQL: {e}; try again", headers={"Retry-After": "1"}) from e
        raise


def request_hash(route: str, body: str) -> bytes:
    return hashlib.sha256(f"{route}\n{body}".encode()).digest()


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, size: int, statement_timeout: float) -> AsyncIterator["Store"]:
        # min_size=0: the API starts (and answers 503) while PostgreSQL is still down.
        pool = await asyncpg.create_pool(
            url, min_size=0, max_size=size,
            server_settings={"statement_timeout": str(int(statement_timeout * 1000)), "application_name": "api"},
        )  # fmt: skip
        try:
            yield cls(pool)
        finally:
            await pool.close()

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        async with translated():
            return await self.pool.fetch(Q[name], *args)

    async def fetch_sql(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A query composed by the caller from the named ones (a list with optional filters)."""
        async with translated():
            return await self.pool.fetch(sql, *args)

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        async with translated():
            return await self.pool.fetchrow(Q[name], *args)

    async def fetchval(self, name: str, *args: Any) -> Any:
        async with translated():
            return await self.pool.fetchval(Q[name], *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with translated(), self.pool.acquire() as conn, conn.transaction():
            yield cast(asyncpg.Connection, conn)  # the pool's proxy of one

    async def write_once(
        self,
        caller: Caller,
        idempotency_key: str | None,
        fingerprint: bytes,
        write: Callable[[asyncpg.Connection], Awaitable[BaseModel]],
    ) -> tuple[dict[str, Any], bool]:
        """Run `write` in a transaction, as `caller` (the operations it writes record the key as their actor).
        With an Idempotency-Key: only the first request with it writes; a retry (even a concurrent one, which
        waits for the first) gets the first's result, and `True` for "replayed". A write that fails leaves no
        trace, so its retry runs again. Returns the result as JSON data."""
        api_key_id = caller.key_id
        async with self.transaction() as conn:
            await conn.execute(Q["act_as"], caller.name, str(caller.key_id))
            if idempotency_key is None:
                return (await write(conn)).model_dump(mode="json"), False
            first = None
            while first is None:  # None: the first's row was just forgotten (expired): claim the key anew
                if await conn.fetchval(Q["claim_idempotency_key"], api_key_id, idempotency_key, fingerprint):
                    break
                first = await conn.fetchrow(Q["idempotent_response"], api_key_id, idempotency_key)
            if first is not None:
                if first["request_hash"] != fingerprint:
                    raise IdempotencyKeyReused(
                        f"Idempotency-Key {idempotency_key!r} was first used with another request; "
                        "use a new key for a new request"
                    )
                return json.loads(first["response_body"]), True
            result = (await write(conn)).model_dump(mode="json")
            await conn.execute(Q["store_idempotent_response"], api_key_id, idempotency_key, json.dumps(result))
            return result, False
